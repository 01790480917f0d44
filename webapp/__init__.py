"""bashfleet's web portal (Flask + Flask-SocketIO). Talks only to sandbox.service."""
