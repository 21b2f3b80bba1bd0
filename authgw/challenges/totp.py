"""TOTP (RFC 6238) with pyotp: new secrets, their otpauth URI and QR code, and judging a code.

Judging returns the time steps whose code matched (previous, current and next step), not a
yes/no: the transition script picks the first step later than the last accepted one, which is
what refuses a replay (RFC 6238 §5.2) atomically with everything else.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import dataclass

import pyotp
import segno

DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


@dataclass(frozen=True)
class TotpPolicy:
    issuer: str
    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    drift_steps: int = 1

    def totp(self, secret: str) -> pyotp.TOTP:
        return pyotp.TOTP(
            secret,
            digits=self.digits,
            interval=self.period,
            digest=DIGESTS[self.algorithm],
            issuer=self.issuer,
        )

    def new_secret(self) -> str:
        # 160 bits, the size of an HMAC-SHA1 block's recommended key (RFC 4226 §4).
        return pyotp.random_base32(32)

    def uri(self, secret: str, customer_id: str) -> str:
        return self.totp(secret).provisioning_uri(name=customer_id, issuer_name=self.issuer)

    def matching_steps(self, secret: str, code: str, now: float) -> list[int]:
        """The steps around ``now`` whose code equals ``code``, compared in constant time."""
        # ASCII digits only: str.isdigit() also admits "²" or "١", which compare_digest
        # cannot compare (TypeError, a 500) and which no authenticator app ever shows.
        if len(code) != self.digits or not (code.isascii() and code.isdigit()):
            return []
        totp = self.totp(secret)
        current = int(now) // self.period
        found = []
        for step in range(current - self.drift_steps, current + self.drift_steps + 1):
            if step >= 0 and hmac.compare_digest(totp.generate_otp(step), code):
                found.append(step)
        return found


def qr_svg(uri: str) -> str:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", xmldecl=False, scale=4)
    return out.getvalue().decode("utf-8")
