"""The tokens the local stack publishes (README, `make up`'s output) are the ones the runtime
refuses beyond loopback: a demo user added to the stack without the runtime knowing would start a
reachable service with a token everyone has."""

from stackutil import local_stack

from crm_runtime.settings import DEV_TOKEN, LOCAL_STACK_TOKENS


def test_every_token_of_the_local_stack_is_refused_beyond_loopback() -> None:
    assert local_stack.DEV_TOKEN == DEV_TOKEN
    assert set(local_stack.DEMO_USERS) == LOCAL_STACK_TOKENS
