"""What the caller hears: TwiML answers, with the transaction read out in natural Japanese.

Every answer is built with ``twilio.twiml.voice_response``. Amounts are written the way they
are said (``15万円``, ``123万4567円``) so the speech engine reads them as amounts, payee names in
half-width katakana are widened, and account digits are spaced to be read one by one.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from authgw.challenges.models import UNPRINTED_CATEGORIES

LANGUAGE = "ja-JP"
KINDS = {"transfer": "お振込み", "payeasy": "ペイジーでのお支払い"}
GATHER_TIMEOUT = 8  # seconds the caller has to press a key

WITHHELD = (
    "お電話番号が非通知のため、ご本人様の確認ができませんでした。"
    "お手数ですが、番号の前に、いち、はち、ろく、をつけて、おかけ直しください。"
)
GREETING = "ご本人様確認のため、お手続き中のお取引をご案内します。"
NO_INPUT_AGAIN = "もう一度ご案内します。"
GOODBYE_PENDING = "入力が確認できませんでした。お手続きは完了していません。お電話を終了します。"
CONFIRM_ASK = "このお取引を承認する場合は1を、お心当たりがない場合は9を押してください。"
CODE_ASK = (
    "お手続き中の画面に表示されている{digits}桁の番号を押してください。"
    "お心当たりがない場合は、9のあとにシャープを押してください。"
)
RESULTS = {
    "verified": "ご本人様の確認ができました。画面に戻ってお手続きを続けてください。",
    "denied": ("お取引を中止しました。お心当たりのないお取引の場合は、至急、お取引の銀行にご連絡ください。"),
    "failed": "番号が正しくないため、お手続きを中止しました。",
    "customer_locked": "ご利用が停止されているため、お手続きできません。銀行にお問い合わせください。",
    "challenge_expired": "お手続きの有効期限が過ぎています。最初からやり直してください。",
    "challenge_not_pending": "このお手続きは、すでに終了しています。",
    "unknown_call": "お手続きが確認できませんでした。お電話を終了します。",
    # AUTHGW_NEW_PHONE_HOLD_SECONDS: the phone was registered too recently to approve anything.
    "new_phone_hold": (
        "このお電話番号は、登録されてから間もないため、お手続きの確認には使えません。"
        "お手続きは承認されていません。しばらくたってから、おかけ直しください。"
    ),
}
WRONG_CODE = "番号が正しくありません。"

# A fraud report ("9": not me) and the self-lock line (IBロック). The bank's number is read
# digit by digit, its groups joined by 「の」, as a number is said on the phone.
NOTHING_APPROVED = "お取引は承認されていません。お手続きを中止しました。"
IB_STOPPED = "安全のため、インターネットバンキングのご利用を停止しました。"
CALL_THE_BANK = "お心当たりのないお取引の場合は、至急、銀行にご連絡ください。"
CALL_THE_BANK_AT = (
    "お手数ですが、銀行の、{number}、までお電話ください。もう一度申し上げます。{number}、です。"
)
LOCK_ASK = (
    "インターネットバンキングのご利用停止のお電話です。"
    "ご利用を停止する場合は、1を押してください。停止しない場合は、そのまま電話をお切りください。"
)
LOCK_NOT_DONE = "ご利用の停止は行いませんでした。お電話を終了します。"
LOCK_NOT_REGISTERED = (
    "おかけのお電話番号は、ご登録がありません。ご利用の停止は行いませんでした。お電話を終了します。"
)
LOCK_RESUME = "ご利用の再開には、銀行での手続きが必要です。"
READINGS = ("ぜろ", "いち", "に", "さん", "よん", "ご", "ろく", "なな", "はち", "きゅう")
DIGIT_READINGS = dict(zip("0123456789", READINGS, strict=True))
INVALID_INPUT = "1か9を押してください。"


# What XML 1.0 can carry at all (its ``Char`` production); anything else makes TwiML malformed.
NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The characters the API refuses in a payee (models.UNPRINTED_CATEGORIES) are never spoken.
UNSPOKEN_CATEGORIES = UNPRINTED_CATEGORIES
ASCII_DIGITS = frozenset("0123456789")


def speakable(text: str) -> str:
    """``text`` without control, format and separator characters, lone surrogates, and anything XML
    cannot carry: what a <Say> may hold, whatever a stored record says (the API refuses such
    characters now, but records written before it did may still be read out)."""
    text = "".join(c for c in text if unicodedata.category(c) not in UNSPOKEN_CATEGORIES)
    return NOT_XML.sub("", text)


def yen(amount: int) -> str:
    """An amount of yen as it is said: 150000 -> ``15万円``, 1234567 -> ``123万4567円``."""
    if amount == 0:
        return "0円"
    parts = []
    for unit, size in (("兆", 10**12), ("億", 10**8), ("万", 10**4)):
        if amount >= size:
            parts.append(f"{amount // size}{unit}")
            amount %= size
    if amount:
        parts.append(str(amount))
    return "".join(parts) + "円"


def money(amount: int, currency: str) -> str:
    """Yen as said; another currency by its code, in its minor unit as the contract holds it."""
    if currency == "JPY":
        return yen(amount)
    return f"{currency}建て、最小単位で{amount:,}"


def spaced_digits(text: str) -> str:
    """Digits to be read one by one: ``4567`` -> ``4、5、6、7``."""
    return "、".join(c for c in text if c in ASCII_DIGITS)


def phone_reading(number: str) -> str:
    """A phone number read digit by digit: ``0120-123-456`` -> ``ぜろ、いち、に、ぜろ、の、いち、...``."""
    groups = [g for g in number.replace("(", "-").replace(")", "-").replace(" ", "-").split("-") if g]
    return "、の、".join("、".join(DIGIT_READINGS[c] for c in g if c in DIGIT_READINGS) for g in groups)


def contact(number: str) -> str:
    """Where to call: the bank's number when configured, else the bank."""
    if not number:
        return CALL_THE_BANK
    return CALL_THE_BANK_AT.format(number=phone_reading(number))


def describe(doc: dict[str, Any]) -> str:
    """The transaction as the caller hears it: kind, amount, payee, last digits."""
    payee = doc.get("payee") or {}
    kind = KINDS.get(doc.get("kind", ""), "お取引")
    name = unicodedata.normalize("NFKC", str(payee.get("name") or "")).strip()
    parts = [f"{kind}、{money(int(doc['amount']), str(doc.get('currency', 'JPY')))}の確認です。"]
    if name and doc.get("kind") == "payeasy":
        parts.append(f"お支払い先は、{name}。")
    elif name:
        parts.append(f"お受取人は、{name}様。")
    number = str(payee.get("account_number") or payee.get("customer_number") or "")
    digits = "".join(c for c in number if c in ASCII_DIGITS)[-4:]
    if digits:
        label = "口座番号" if "account_number" in payee else "お客様番号"
        parts.append(f"{label}の末尾は、{spaced_digits(digits)}です。")
    return "".join(parts)


class Voice:
    """TwiML answers in one voice."""

    def __init__(self, voice: str) -> None:
        self.voice = voice

    def _say(self, target: Any, text: str) -> None:
        # Every word the caller hears passes here: the one place TwiML text is made safe.
        target.say(speakable(text), language=LANGUAGE, voice=self.voice)

    # The two fixed answers are built once per Voice: every matched call in reject mode gets
    # the first, and building TwiML is a webhook's cost like any other.
    @functools.cached_property
    def _reject(self) -> str:
        response = VoiceResponse()
        response.reject()
        return str(response)

    @functools.cached_property
    def _withheld(self) -> str:
        response = VoiceResponse()
        self._say(response, WITHHELD)
        response.hangup()
        return str(response)

    def reject(self) -> str:
        """Leave the call unanswered: the caller is not charged."""
        return self._reject

    def withheld(self) -> str:
        return self._withheld

    def ask(self, doc: dict[str, Any], mode: str, action: str, code_digits: int) -> str:
        """Read the transaction and gather the answer; no input: once more, then hang up."""
        return self._gather(
            mode, action, code_digits, [GREETING + describe(doc), NO_INPUT_AGAIN + describe(doc)]
        )

    def ask_again(self, mode: str, action: str, code_digits: int, message: str) -> str:
        return self._gather(mode, action, code_digits, [message])

    def _gather(self, mode: str, action: str, code_digits: int, intros: list[str]) -> str:
        """One <Gather> per intro, each ending with the question; after them, goodbye (the
        challenge stays pending) and hang up."""
        question = CONFIRM_ASK if mode == "confirm" else CODE_ASK.format(digits=code_digits)
        num_digits = 1 if mode == "confirm" else code_digits
        response = VoiceResponse()
        for intro in intros:
            gather = response.gather(
                num_digits=num_digits,
                action=action,
                method="POST",
                timeout=GATHER_TIMEOUT,
                finish_on_key="#",
                action_on_empty_result=False,
            )
            self._say(gather, intro + question)
        self._say(response, GOODBYE_PENDING)
        response.hangup()
        return str(response)

    def result(self, status: str) -> str:
        return self._spoken(RESULTS.get(status, RESULTS["unknown_call"]))

    def _spoken(self, text: str) -> str:
        response = VoiceResponse()
        self._say(response, text)
        response.hangup()
        return str(response)

    def fraud_reported(self, locked: bool, bank_number: str) -> str:
        """After a "9": nothing approved, internet banking stopped (when it was), whom to call."""
        return self._spoken(NOTHING_APPROVED + (IB_STOPPED if locked else "") + contact(bank_number))

    def lock_ask(self, action: str) -> str:
        """The self-lock line: press 1 to stop internet banking; no input: asked once more."""
        response = VoiceResponse()
        for intro in ("", NO_INPUT_AGAIN):
            gather = response.gather(
                num_digits=1,
                action=action,
                method="POST",
                timeout=GATHER_TIMEOUT,
                finish_on_key="#",
                action_on_empty_result=False,
            )
            self._say(gather, intro + LOCK_ASK)
        self._say(response, LOCK_NOT_DONE)
        response.hangup()
        return str(response)

    def lock_done(self, bank_number: str) -> str:
        return self._spoken(IB_STOPPED + LOCK_RESUME + contact(bank_number))

    def lock_not_done(self) -> str:
        return self._spoken(LOCK_NOT_DONE)

    def lock_not_registered(self) -> str:
        return self._spoken(LOCK_NOT_REGISTERED)
