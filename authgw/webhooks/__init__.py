"""The phone side: Twilio signature checks, caller-ID normalisation, TwiML answers and the
simulated caller."""
