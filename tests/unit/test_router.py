"""Router: an MT for a number goes to the least loaded bind of the account covering it; equal binds take turns."""

from __future__ import annotations

from gateway.accounts import Accounts
from gateway.config import AccountConfig
from gateway.numbers import NumberPlan
from gateway.router import Router
from gateway.store.records import Direction, Message, MessageStatus


class Bind:
    def __init__(self, account, name: str, load: int = 0) -> None:
        self.account = account
        self.name = name
        self.can_receive = True
        self.load = load
        self.address_range = None
        self.optional_parameters = True
        self.mo_numbers: set[str] = set()
        self.stalled = False
        self.holding = False

    def offer(self, message: Message, again: bool = False) -> None:  # pragma: no cover - the router only chooses
        raise AssertionError("not called by route()")


def router_with(loads: list[int]) -> tuple[Router, list[Bind]]:
    accounts = Accounts((AccountConfig("handset", "pw", "handset", numbers=("86137",)),))
    router = Router(accounts)
    binds = [Bind(accounts.get("handset"), f"b{i}", load) for i, load in enumerate(loads)]
    for bind in binds:
        router.bound(bind)
    return router, binds


MT = Message("m", Direction.MT, MessageStatus.ENROUTE, "", "10086", "8613700000001", b"hi")


def test_the_least_loaded_bind_is_chosen_wherever_it_is() -> None:
    for position in range(4):
        loads = [5, 5, 5, 5]
        loads[position] = 1
        router, binds = router_with(loads)
        for _ in range(4):  # whatever the rotating start
            assert router.route(MT) is binds[position]


def test_equal_binds_take_turns_and_ties_go_to_the_first_from_the_turn() -> None:
    router, binds = router_with([0, 0, 0])
    assert [router.route(MT).name for _ in range(6)] == ["b0", "b1", "b2", "b0", "b1", "b2"]
    router, binds = router_with([3, 1, 1, 2])  # b1 and b2 tie; the turn starts at b0, b1, b2, b3, ...
    assert [router.route(MT).name for _ in range(4)] == ["b1", "b1", "b2", "b1"]


def test_a_bind_announced_twice_is_gone_once_it_unbinds() -> None:
    """A connection added twice stayed in the router after its one unbound(): MTs were queued on a closed bind."""
    router, [bind] = router_with([0])
    router.bound(bind)
    router.unbound(bind)
    assert router.route(MT) is None


def test_an_address_range_in_pythons_spelling_still_serves_its_numbers() -> None:
    """`\\Z` and `{,n}` are Python's spellings, which RE2 (the engine since the ReDoS fix) writes `\\z` and `{0,n}`:
    such ranges were taken as one literal number and served nobody, the MTs waiting in the store."""
    from gateway.router import compile_address_range

    for written in (r"^86138\d{8}\Z", r"^86138\d{,8}$", r"86138\d{8}", r"^86138"):
        pattern = compile_address_range(written, NumberPlan())
        assert pattern is not None and pattern.search("8613800000012"), written
    escaped = compile_address_range(r"^86138\\Z", NumberPlan())  # an escaped backslash, then Z: not the end
    assert escaped is not None and not escaped.search("8613800000012")


def test_an_address_range_remembers_its_answers_up_to_a_limit() -> None:
    """Each MT asks its bind's address_range about its subscriber; the answers are remembered (an RE2 search costs
    microseconds of Python wrapping), but a bind serving millions of numbers must not remember them all."""
    from gateway.router import compile_address_range

    pattern = compile_address_range(r"^86138\d{8}$", NumberPlan())
    assert pattern is not None
    limit = type(pattern).LIMIT
    numbers = [f"86138{n:08d}" for n in range(limit + 10)] + [f"86139{n:08d}" for n in range(10)]
    for _ in range(2):  # the second time from memory (where it still has them)
        assert [bool(pattern.search(n)) for n in numbers] == [True] * (limit + 10) + [False] * 10
    assert len(pattern._known) <= limit


def test_a_retry_avoids_the_bind_it_failed_on_and_that_bind_is_no_longer_its_subscribers() -> None:
    router, binds = router_with([5, 0, 0])
    router.note_mo(MT.dest_addr, binds[1])
    assert router.route(MT) is binds[1]  # the bind of its MO, however busy the others
    assert {router.route(MT, avoid=binds[1]).name for _ in range(4)} == {"b2"}  # the least loaded of the others
    router.note_failure(MT.dest_addr, binds[1])
    assert {router.route(MT).name for _ in range(4)} == {"b1", "b2"}  # the least loaded, in turn
    router, [only] = router_with([0])
    assert router.route(MT, avoid=only) is only  # none other serves it


def test_a_retry_too_long_for_smpp_3_3_goes_back_to_the_only_bind_of_3_4_it_failed_on() -> None:
    """Avoiding the bind of SMPP 3.4 it failed on left only a bind of 3.3, which cannot take it: it was parked, for as
    long as its validity, with the bind of 3.4 bound and answering."""
    router, [smpp34, smpp33] = router_with([0, 0])
    smpp33.optional_parameters = False
    long_mt = Message("m", Direction.MT, MessageStatus.ENROUTE, "", "10086", "8613700000001", b"x" * 300)
    assert router.route(long_mt, avoid=smpp34) is smpp34
    assert router.route(MT, avoid=smpp34) is smpp33  # a text 3.3 carries goes to the other


def test_a_stalled_bind_gets_mts_only_when_no_other_serves_them_until_it_answers() -> None:
    """A bind that left a deliver_sm unanswered (Router.stalled): the other binds first, whatever its address_range
    or the subscriber's last MO say; alone, it still gets them; an answer makes it a bind like any other again."""
    from gateway.router import compile_address_range

    router, [ranged, other] = router_with([0, 5])
    router.unbound(ranged)
    ranged.address_range = compile_address_range("^86137", NumberPlan())
    router.bound(ranged)
    router.note_mo(MT.dest_addr, ranged)
    assert router.route(MT) is ranged
    router.stalled(ranged)
    assert {router.route(MT).name for _ in range(4)} == {"b1"}
    assert list(router.answering_of("handset")) == [other]
    router.unbound(other)
    assert router.route(MT) is ranged  # none other serves it
    assert list(router.answering_of("handset")) == [ranged]
    router.bound(other)
    router.answered(ranged)
    assert router.route(MT) is ranged
    router.stalled(ranged)
    router.unbound(ranged)  # gone: no longer stalled
    assert not ranged.stalled
    router.bound(ranged)
    assert router.route(MT) is ranged


def test_an_address_range_knows_what_every_number_it_serves_starts_with() -> None:
    """A bind's backlog read reads only the numbers its range can serve (Delivery._pull): the prefix must hold for
    every number the range matches, and be None where no literal start bounds them."""
    from gateway.router import compile_address_range, range_prefixes

    plan = NumberPlan()
    for written, prefixes in (
        ("^8613899999998$", ("8613899999998",)),
        ("+86 138 9999 9998", ("8613899999998", "868613899999998")),  # one number: as written with 86 before it too
        ("13899999998", ("8613899999998", "868613899999998")),
        (r"^86138\d{8}$", ("8613",)),  # what follows the run may quantify its last digit
        ("^861380?1", ("86138",)),  # a digit a quantifier follows may be absent
        ("^86138*", ("8613",)),
        ("^86{2}", ("8",)),
        ("^8613+", ("861",)),
        ("^86[13]8", ("8",)),
        (r"^86138\Z", ("8613",)),
        ("^86138(?i)?", ("8613",)),  # (?i) matches nothing: the ? makes the 8 optional
        (r"^86138\Q\E?", ("8613",)),
        ("^86138$", ("86138",)),
        ("^86137|^86138", None),  # an alternation, anywhere
        ("^(86137|86138)", None),
        ("86138", ("8686138", "86138")),  # plain digits: one number
        (r"86138\d{8}", None),  # unanchored
        (r"^\d+", None),
        ("(?s)^86138", None),
        ("^86138(?=1)", ("^86138(?=1)",)),  # lookaround: no RE2 pattern, so that one literal text
    ):
        found = range_prefixes(compile_address_range(written, plan))
        assert (found if found is None else set(found)) == (prefixes if prefixes is None else set(prefixes)), written
    assert range_prefixes(compile_address_range("", plan)) is None
    assert range_prefixes(None) is None
