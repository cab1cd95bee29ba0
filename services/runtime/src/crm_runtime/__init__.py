"""Plumbing every CRM service uses: settings, Kafka, MongoDB, outbox, dead letters, HTTP.

No business rules live here.
"""
