from handlers.pages import fits_one_sms, paginate

MARK = lambda i, n: f"({i}/{n})"  # noqa: E731


def test_what_fits_one_page_is_not_marked() -> None:
    assert paginate(["head:", "1.item;", "foot."], MARK) == ["head:1.item;foot."]


def test_pages_are_cut_between_pieces_and_each_fits() -> None:
    pieces = ["温馨提示:"] + [f"{i}.某某公司提供的某某业务,信息费10元/月;" for i in range(1, 6)] + ["退订请发送0000到10086。"]
    pages = paginate(pieces, MARK)
    assert [p[:5] for p in pages] == [f"({i}/{len(pages)})" for i in range(1, len(pages) + 1)]
    assert all(fits_one_sms(p) for p in pages)
    assert "".join(p[5:] for p in pages) == "".join(pieces)  # nothing lost, nothing cut


def test_a_piece_too_long_for_a_page_gets_one_of_its_own() -> None:
    pages = paginate(["short;", "长" * 100, "end."], MARK)
    assert pages == ["(1/3)short;", "(2/3)" + "长" * 100, "(3/3)end."]


def test_gsm_pages_hold_160_septets_and_extension_characters_count_twice() -> None:
    assert fits_one_sms("a" * 160) and not fits_one_sms("a" * 161)
    assert not fits_one_sms("€" * 81)
    assert fits_one_sms("中" * 70) and not fits_one_sms("中" * 71)
