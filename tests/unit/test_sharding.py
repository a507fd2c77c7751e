"""Which replica owns which monitor: rendezvous hashing, and a hand-over that never lets two
replicas act on one monitor at once, checked over random joins, crashes and clean stops."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from evergreen.controller.sharding import Key, LeaseLiveness, Ownership, owner, weight
from evergreen.kube.leases import LeaseRecord

WEIGHT = 0x57F495CECAE6B348
KEYS: list[Key] = [(f"team-{i % 7}", f"model-{i}") for i in range(200)]
names = st.text("abcdefghij-", min_size=1, max_size=8)


def test_weights_are_stable_across_processes() -> None:
    # A fixed value: Python's salted hash() would make replicas disagree.
    assert weight("evergreen-0", ("ml", "fraud")) == WEIGHT
    assert owner(("ml", "fraud"), []) is None


@given(st.sets(names, min_size=1, max_size=6))
def test_the_owner_is_a_member_whoever_lists_them(members: set[str]) -> None:
    for key in KEYS[:20]:
        chosen = owner(key, members)
        assert chosen in members
        assert owner(key, sorted(members, reverse=True)) == chosen


@given(st.sets(names, min_size=2, max_size=6), st.data())
def test_a_member_leaving_moves_only_its_own_monitors(members: set[str], data: st.DataObject) -> None:
    leaving = data.draw(st.sampled_from(sorted(members)))
    for key in KEYS:
        before = owner(key, members)
        after = owner(key, members - {leaving})
        assert before in (after, leaving)


def test_monitors_spread_evenly() -> None:
    members = [f"evergreen-{i}" for i in range(4)]
    counts = {m: 0 for m in members}
    for i in range(4000):
        counts[str(owner(("ns", f"monitor-{i}"), members))] += 1
    assert all(800 <= n <= 1200 for n in counts.values()), counts


# The hand-over ---------------------------------------------------------------------------------


def test_a_new_replica_waits_the_grace_period_before_acting() -> None:
    ownership = Ownership("b", grace=15, now=0)
    ownership.observe({"a"}, now=1)
    mine = [key for key in KEYS if owner(key, {"a", "b"}) == "b"]
    assert mine
    assert not any(ownership.owns(key, 15.9) for key in mine)
    assert all(ownership.owns(key, 16) for key in mine)
    assert not any(ownership.owns(key, 16) for key in KEYS if key not in mine)


def test_monitors_of_a_member_that_left_are_taken_at_once() -> None:
    ownership = Ownership("b", grace=15, now=0)
    ownership.observe({"a"}, now=0)
    ownership.observe(set(), now=30)  # a's Lease expired or was deleted
    assert all(ownership.owns(key, 30) for key in KEYS)


def test_a_fenced_replica_acts_on_nothing_and_waits_again_after() -> None:
    ownership = Ownership("b", grace=15, now=0)
    ownership.observe(set(), now=0)
    assert ownership.owns(KEYS[0], 15)
    ownership.fence(now=20)
    assert not ownership.owns(KEYS[0], 20) and ownership.members == frozenset()
    ownership.observe(set(), now=25)
    assert not ownership.owns(KEYS[0], 39)
    assert ownership.owns(KEYS[0], 40)


def test_history_older_than_the_grace_period_is_forgotten() -> None:
    ownership = Ownership("b", grace=15, now=0)
    for second in range(0, 1000, 5):
        ownership.observe({"a"} if second % 10 else set(), now=second)
    assert len(ownership._views) <= 5


@dataclass
class Replica:
    name: str
    start: float
    lag: float  # how far behind the truth its listings are (< grace - renew period)
    phase: float  # when in the renew period it lists
    stop: float = float("inf")  # crashed or stopped: acts on nothing from then on
    ownership: Ownership = field(init=False)

    def __post_init__(self) -> None:
        self.ownership = Ownership(self.name, grace=GRACE, now=self.start)


LEASE = 3.0
RENEW = 1.0
GRACE = LEASE


@dataclass
class Truth:
    """Which Leases exist when: joined at start, deleted at a clean stop, expired one Lease
    duration after a crash."""

    leases: dict[str, tuple[float, float]] = field(default_factory=dict)

    def members(self, at: float) -> set[str]:
        return {name for name, (born, gone) in self.leases.items() if born <= at < gone}


lifetimes = st.lists(
    st.tuples(
        st.floats(0, 20),  # start
        st.floats(0.5, 20),  # lifetime
        st.booleans(),  # crashed (else stopped cleanly)
        st.floats(0, GRACE - RENEW - 0.01),  # lag
        st.floats(0, RENEW),  # phase
    ),
    min_size=1,
    max_size=5,
)


Life = tuple[float, float, bool, float, float]


@settings(max_examples=60, deadline=None)
@given(lifetimes)
def test_no_two_replicas_ever_act_on_one_monitor(lives: list[Life]) -> None:
    truth = Truth()
    replicas = []
    for i, (start, life, crashed, lag, phase) in enumerate(lives):
        name = f"r{i}"
        stop = start + life
        truth.leases[name] = (start, stop + LEASE if crashed else stop)
        replicas.append(Replica(name, start, lag, phase, stop))
    keys = KEYS[:16]
    step = 0.1
    end = max(r.stop for r in replicas) + LEASE + GRACE + 2 * RENEW
    tick = 0
    while tick * step <= end:
        now = tick * step
        for replica in replicas:
            if not replica.start <= now < replica.stop:
                continue
            since = now - replica.start - replica.phase
            if since >= 0 and (since % RENEW) < step:
                seen = truth.members(now - replica.lag) - {replica.name}
                replica.ownership.observe(seen, now)
        for key in keys:
            acting = [r.name for r in replicas if r.start <= now < r.stop and r.ownership.owns(key, now)]
            assert len(acting) <= 1, (now, key, acting)
        tick += 1


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 5), st.floats(0, GRACE - RENEW - 0.01))
def test_every_monitor_is_owned_once_members_agree(count: int, lag: float) -> None:
    replicas = [Ownership(f"r{i}", grace=GRACE, now=0) for i in range(count)]
    members = {f"r{i}" for i in range(count)}
    for ownership in replicas:
        ownership.observe(members - {ownership.identity}, now=lag)
    for key in KEYS:
        assert sum(o.owns(key, lag + GRACE) for o in replicas) == 1


# Lease liveness --------------------------------------------------------------------------------


def lease(name: str, version: str, duration: float = 3) -> LeaseRecord:
    return LeaseRecord(name=name, holder=name, resource_version=version, duration_seconds=duration)


def test_a_lease_expires_a_duration_after_it_was_last_seen_to_change() -> None:
    liveness = LeaseLiveness()
    liveness.update([lease("a", "1"), lease("b", "7")], now=100)
    liveness.update([lease("a", "2"), lease("b", "7")], now=102)
    assert liveness.live(102.5) == {"a", "b"}
    assert liveness.live(103) == {"a"}
    assert [record.name for record in liveness.expired(103)] == ["b"]
    liveness.update([lease("a", "2")], now=104)  # b was deleted
    assert liveness.live(104) == {"a"} and liveness.expired(104) == []
    assert liveness.live(105) == frozenset()
