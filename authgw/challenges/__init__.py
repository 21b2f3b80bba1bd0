"""The challenge domain: customers, TOTP, lockout, the lifecycle, its Lua transitions and its
HTTP blueprint."""
