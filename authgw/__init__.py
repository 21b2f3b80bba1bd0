"""authgw: phone-callback and TOTP authentication gateway for a bank's fund moves.

The application factory is ``authgw.app.create_app``. This module imports nothing else, so the
CLI can prepare the environment (metrics directory, embedded store) before anything loads.
"""
