"""Judging a TOTP code: read the sealed secret with the store's now, compute the matching steps.

Both the enrolment's confirmation (``Customers.confirm_totp``) and a challenge's verification
(``Challenges.verify_totp``) judge codes this way; the transition script then picks the first
step later than the last accepted one, atomically with the rest (``totp.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from authgw import scripts
from authgw.challenges.domain import Now
from authgw.challenges.totp import TotpPolicy
from authgw.errors import StoreUnavailable
from authgw.keys import CustomerKeys
from authgw.secretbox import SecretBox
from authgw.store import Store


def secret_context(customer_id: str) -> str:
    """Associated data binding a sealed secret to its customer."""
    return f"totp:{customer_id}"


@dataclass(frozen=True)
class Judging:
    """What a transition script needs to judge a code: the ciphertext the codes were computed
    with ('' for none), the matching steps as the scripts take them, and the store's now they
    were computed at."""

    customer_id: str
    sealed: str
    steps: str
    now: Now


@dataclass(frozen=True)
class Codes:
    store: Store
    box: SecretBox
    totp: TotpPolicy

    def read(self, keys: CustomerKeys, which: Literal["totp", "totp_pending"], code: str) -> Judging:
        """The ``which`` secret of the customer and the steps whose code is ``code``, computed
        at the store's now (``TIME``) read with it: one read, with any held counters."""
        secret = scripts.totp_secret(self.store, keys, which=which)
        now = Now(secret.now_ms)
        return Judging(secret.customer_id, secret.sealed, self._steps(secret, code, now.seconds), now)

    def _steps(self, secret: scripts.Secret, code: str, now: float) -> str:
        if not secret.sealed:
            return ""
        try:
            plain = self.box.open(secret.sealed, secret_context(secret.customer_id))
        except ValueError as exc:
            # A secret no configured key opens: fail closed, loudly.
            raise StoreUnavailable("a TOTP secret cannot be decrypted") from exc
        return ",".join(str(s) for s in self.totp.matching_steps(plain, code, now))
