"""The console: pages for people, composed from the services' HTTP APIs. It holds no data."""
