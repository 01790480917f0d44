"""bashfleet's engine: parse, classify, effects, plan, schedule, execute.

The engine never imports the web layer (flask, flask_socketio, webapp).
"""

__version__ = "0.1.0"
