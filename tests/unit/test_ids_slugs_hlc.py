import re

from edgesync import hlc, ids, slugs

FIXED = 1_795_000_000.0  # one second, frozen


def test_id_has_the_documented_shape():
    rid = ids.new_id("EDGE01", "LON")
    assert ids.ID_RE.match(rid), rid
    node, loc, code, rand, stamp = rid.split("-")
    assert (node, loc) == ("EDGE01", "LON")
    assert re.fullmatch(r"[0-9]{2}[A-Z]{2}", code)
    assert re.fullmatch(r"[A-Z0-9]{8}", rand)
    assert len(stamp) == 14 and stamp.isdigit()


def test_id_stamp_is_utc_day_month_year_hour_minute_second():
    rid = ids.new_id("EDGE01", "LON", now=0)
    assert rid.endswith("-01011970000000")


def test_a_million_ids_made_in_one_second_are_distinct():
    made = {ids.new_id("EDGE01", "LON", now=FIXED) for _ in range(1_000_000)}
    assert len(made) == 1_000_000


def test_random_parts_use_the_whole_alphabet():
    seen = set()
    for _ in range(2000):
        seen.update(ids.random_of(ids.new_id("N", "LO")))
    assert seen == set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def test_invalid_ids_are_recognised():
    assert not ids.is_valid_id("edge01-LON-43AX-K3J9X0QZ-27112026200512")
    assert not ids.is_valid_id("EDGE01-LON-43AX-K3J9X0Q-27112026200512")
    assert not ids.is_valid_id(42)
    assert ids.is_valid_id("EDGE01-LON-43AX-K3J9X0QZ-27112026200512")


def test_slug_transliterates_and_drops_punctuation():
    assert slugs.wanted(["Admin", "Ünïcödé Páge!"], "43AX", "pages") == "admin-unicode-page-43ax"
    assert slugs.wanted(["Straße", "Ærø & Łódź"], "01ZZ", "pages") == "strasse-aero-lodz-01zz"
    assert slugs.wanted([None, "don't stop"], "01ZZ", "pages") == "dont-stop-01zz"


def test_a_title_without_letters_still_gets_a_valid_slug():
    assert slugs.wanted(["!!!", "   "], "12AB", "pages") == "pages-12ab"
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slugs.wanted(["🙂"], "12AB", "pages"))


def test_slug_length_is_bounded_at_a_word_boundary():
    slug = slugs.wanted(["word " * 100], "12AB", "pages")
    assert len(slug) <= slugs.MAX_WORDS_LEN + 5
    assert slug.endswith("-word-12ab")
    long_word = slugs.wanted(["x" * 500], "12AB", "pages")
    assert long_word == "x" * slugs.MAX_WORDS_LEN + "-12ab"


def test_fallback_slugs_cannot_look_like_wanted_ones():
    fb = slugs.fallback("example-page-43ax", "K3J9X0QZ")
    assert fb == "example-page-43ax-k3j9x0qz"
    assert not re.search(r"-[0-9]{2}[a-z]{2}$", fb)


def test_hlc_ticks_forward_even_when_the_wall_clock_stands_still():
    a = hlc.tick(None, "EDGE01", now_ms=1000)
    b = hlc.tick(a, "EDGE01", now_ms=1000)
    c = hlc.tick(b, "EDGE01", now_ms=999)  # clock stepped back
    assert a < b < c
    assert hlc.decode(c)[:2] == (1000, 2)


def test_hlc_orders_by_time_then_counter_then_node():
    assert hlc.encode(2, 0, "A") > hlc.encode(1, 9, "Z")
    assert hlc.encode(1, 1, "A") > hlc.encode(1, 0, "Z")
    assert hlc.encode(1, 0, "EDGE2") > hlc.encode(1, 0, "EDGE10")
    assert all(hlc.is_valid(hlc.encode(1, 0, n)) for n in ("A", "EDGE01"))
