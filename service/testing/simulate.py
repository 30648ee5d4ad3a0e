"""`calcom-verifier simulate`: the first version's three test scenarios end to end, offline, in a few seconds.

Everything runs in this process (see `world`); the scenarios are in `scenarios`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from service.app.status import collect
from service.store import secretbox
from service.testing.scenarios import Outcome, dauerwelle, herrenhaarschnitt, real_failure
from service.testing.simulate_guard import guard_story
from service.testing.world import (
    ACCOUNT,
    CALCOM,
    DAY,
    PLATFORM,
    SCHEDULE,
    SETTLE,
    START,
    Out,
    SimulationSecrets,
    World,
    world,
)


async def summary(world: World, outcomes: list[Outcome]) -> bool:
    headers = ("scenario", "appt", "expected", "got", "via", "verdict after", "Cal.com calls")
    rows = [(o.scenario, o.appointment_id, o.expected, o.got, o.via or "-", o.verdict_after, str(o.calcom_calls)) for o in outcomes]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    world.say("━━ Summary ━━")
    for row in [headers, *rows]:
        world.say("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    received = world.platform.received
    statuses = [item["body"]["verification"]["status"] for item in received if item["valid"]]
    world.say(
        f"  the platform received {len(received)} signed verdict callback(s), {len(statuses)} with a valid signature: {', '.join(statuses)}"
    )
    world.say(await status_line(world))
    matched = all(o.expected == o.got for o in outcomes)
    delivered = len(statuses) == len(outcomes)
    if matched and delivered:
        world.say("  ✅ all three outcomes as expected (the first version's test plan)")
    else:
        world.say("  ❌ " + ("an outcome differs from the expected one" if not matched else "a verdict callback is missing"))
    return matched and delivered


async def status_line(world: World) -> str:
    """The first version's success metrics as /status reports them for this run."""
    figures = await collect(world.services.db, world.clock(), world.services.settings)
    rate = "n/a" if figures["auto_recovery_rate"] is None else f"{figures['auto_recovery_rate']:.0%}"
    via = figures["resolved_via"]
    return (
        f"  /status: auto-recovery rate {rate} (target > 90 %; the real failure counts against it), "
        f"review queue {figures['review_queue']['size']}, resolved via webhook {via['webhook']} / poll {via['poll']} / system {via['system']}"
    )


async def simulate(out: Out = print, *, keys: SimulationSecrets | None = None) -> int:
    """Run the three scenarios, narrate them with `out`; 0 when every outcome is the expected one."""
    keys = keys or SimulationSecrets.generate()
    began = time.perf_counter()
    out("Simulating the first version's three test scenarios: the real web app and poller on a temporary SQLite database,")
    out(f"a fake Cal.com and a stand-in platform, all in this process, with a simulated clock (starts {START:%Y-%m-%d %H:%M} UTC).")
    out(
        f"SETTLE_SECONDS={SETTLE:g}  CHECK_SCHEDULE={','.join(f'{s:g}' for s in SCHEDULE)}  MATCH_TOLERANCE_SECONDS=300; "
        f"appointments on {DAY:%Y-%m-%d}, salon time (CET)"
    )
    outer_keys = secretbox.install(None)  # the run's own key; the process' keys come back afterwards
    try:
        return await _simulate(out, keys, began)
    finally:
        secretbox.install(outer_keys)


async def _simulate(out: Out, keys: SimulationSecrets, began: float) -> int:
    with tempfile.TemporaryDirectory(prefix="calcom-verifier-simulate-") as directory:
        async with world(Path(directory), keys, out) as w:
            account = {
                "calcom_api_key": keys.calcom_api_key,
                "webhook_secret": keys.webhook_secret,
                "calcom_api_base": CALCOM,
                "callback_url": PLATFORM,
                "callback_secret": keys.callback_secret,
            }
            response = await w.api("PUT", f"/api/accounts/{ACCOUNT}", json=account)
            w.say(
                f"PUT /api/accounts/{ACCOUNT} → {response.status_code} (Cal.com API key, webhook and callback secrets generated; not shown)"
            )
            w.say()
            outcomes = []
            for scenario in (dauerwelle, herrenhaarschnitt, real_failure):
                outcomes.append(await scenario(w))
                w.say()
            ok = await summary(w, outcomes)
            w.say()
            w.fake.add_webhook(keys.calcom_api_key, f"http://verifier.sim/webhooks/calcom/{ACCOUNT}", keys.webhook_secret)
            ok = await guard_story(w) and ok
            simulated = (w.clock() - START).total_seconds()
    out(f"  finished in {time.perf_counter() - began:.1f} s of real time ({simulated / 60:.1f} simulated minutes)")
    return 0 if ok else 1
