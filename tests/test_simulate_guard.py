"""`simulate` tells the guard's story too: the caller hears the truth inside each create call."""

from __future__ import annotations

from service.testing.simulate import SimulationSecrets, simulate

KEYS = SimulationSecrets(
    api_token="sim-api-token-guard-7d6c5e4f",
    calcom_api_key="cal_live_sim_guard_1a2b3c4d5e",
    webhook_secret="sim-webhook-secret-guard-9f8e",
    callback_secret="whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=",
)


async def test_the_three_salon_scenarios_through_the_guard_are_heard_truthfully_in_the_create_call() -> None:
    lines: list[str] = []

    code = await simulate(lines.append, keys=KEYS)

    text = "\n".join(lines)
    assert code == 0, text
    assert "Dauerwelle (guard)         expected booked  heard booked" in text
    assert "Herrenhaarschnitt (guard)  expected booked  heard booked" in text
    assert "Real failure (guard)       expected taken   heard taken" in text
    assert "X-Verifier-Recovered: timeout" in text and "replayed (True)" in text
    assert "bookings Cal.com holds twice: 0" in text and "✅ every caller heard the truth inside the create call" in text
    for secret in (KEYS.api_token, KEYS.calcom_api_key, KEYS.webhook_secret, KEYS.callback_secret):
        assert secret not in text
