"""The incremental event-stream parser: line ends, splits, fields, limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.agent.sse import SSEError, SSEEvent, SSEParser


def parse(*chunks: bytes, max_bytes: int | None = None) -> list[SSEEvent]:
    parser = SSEParser() if max_bytes is None else SSEParser(max_bytes)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


def datas(events: list[SSEEvent]) -> list[str]:
    return [e.data for e in events]


class LinesTests(SynchronousTestCase):
    def test_one_event(self) -> None:
        self.assertEqual(parse(b"data: hello\n\n"), [SSEEvent("hello")])

    def test_all_line_ends(self) -> None:
        for end in (b"\n", b"\r\n", b"\r"):
            with self.subTest(end=end):
                stream = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
                self.assertEqual(datas(parse(stream)), ["a\nb", "c"])

    def test_several_events_in_one_feed(self) -> None:
        self.assertEqual(datas(parse(b"data: 1\n\ndata: 2\n\ndata: 3\n\n")), ["1", "2", "3"])

    def test_line_split_across_feeds(self) -> None:
        self.assertEqual(datas(parse(b"da", b"ta: {\"a\"", b": 1}\n", b"\n")), ['{"a": 1}'])

    def test_split_inside_a_utf8_character(self) -> None:
        encoded = "data: caf\u00e9 \u2014 \U0001f600\n\n".encode()
        for cut in range(1, len(encoded)):
            with self.subTest(cut=cut):
                self.assertEqual(datas(parse(encoded[:cut], encoded[cut:])), ["caf\u00e9 \u2014 \U0001f600"])

    def test_crlf_split_between_feeds_is_one_line_end(self) -> None:
        # Were the \n counted as a second line end, "a" would be dispatched alone.
        self.assertEqual(datas(parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")), ["a\nb"])

    def test_lone_cr_at_end_then_other_byte(self) -> None:
        self.assertEqual(datas(parse(b"data: a\r", b"\r")), ["a"])

    def test_one_space_after_colon_stripped(self) -> None:
        self.assertEqual(datas(parse(b"data:x\n\ndata:  y\n\ndata\n\n")), ["x", " y", ""])

    def test_comments_and_keepalives_ignored(self) -> None:
        self.assertEqual(datas(parse(b": keep-alive\n\n:ping\ndata: a\n: inside\n\n")), ["a"])

    def test_event_type_id_and_retry(self) -> None:
        events = parse(b"retry: 100\nevent: error\nid: 7\ndata: x\n\ndata: y\n\n")
        self.assertEqual(events, [SSEEvent("x", "error", "7"), SSEEvent("y", "message", "7")])

    def test_blank_line_without_data_dispatches_nothing(self) -> None:
        self.assertEqual(parse(b"event: x\n\n\n\ndata: z\n\n"), [SSEEvent("z")])

    def test_unterminated_event_is_not_dispatched(self) -> None:
        self.assertEqual(parse(b"data: a\n\ndata: partial\n"), [SSEEvent("a")])

    def test_leading_bom_dropped(self) -> None:
        self.assertEqual(parse(b"\xef\xbb", b"\xbfdata: a\n\n"), [SSEEvent("a")])

    def test_openai_done_marker_is_plain_data(self) -> None:
        self.assertEqual(datas(parse(b'data: {"x":1}\n\ndata: [DONE]\n\n')), ['{"x":1}', "[DONE]"])


class LimitTests(SynchronousTestCase):
    def test_unterminated_line_over_limit(self) -> None:
        parser = SSEParser(max_bytes=100)
        parser.feed(b"data: " + b"x" * 90)
        self.assertRaises(SSEError, parser.feed, b"x" * 20)

    def test_event_data_over_limit(self) -> None:
        parser = SSEParser(max_bytes=100)
        self.assertRaises(SSEError, parser.feed, b"data: 0123456789\n" * 10)

    def test_error_is_a_value_error(self) -> None:
        self.assertTrue(issubclass(SSEError, ValueError))

    def test_many_events_under_limit(self) -> None:
        parser = SSEParser(max_bytes=100)
        self.assertEqual(len(parser.feed(b"data: 0123456789\n\n" * 1000)), 1000)


_LINE = st.one_of(
    st.text(max_size=12).map(lambda t: "data: " + t),
    st.text(max_size=6).map(lambda t: ":" + t),
    st.sampled_from(["event: error", "id: 3", "retry: 5", "data", "data:x", ""]),
).map(lambda line: line.replace("\r", "").replace("\n", ""))


@st.composite
def streams_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    lines = draw(st.lists(_LINE, max_size=20))
    ends = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(lines), max_size=len(lines)))
    stream = "".join(line + end for line, end in zip(lines, ends)).encode("utf-8")
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return stream, cuts


class AnySplitTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(streams_and_cuts())
    def test_any_split_gives_the_same_events(self, stream_and_cuts: tuple[bytes, list[int]]) -> None:
        stream, cuts = stream_and_cuts
        bounds = [0, *cuts, len(stream)]
        chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
        self.assertEqual(parse(*chunks), parse(stream))

    @settings(max_examples=100, deadline=None)
    @given(streams_and_cuts())
    def test_byte_at_a_time(self, stream_and_cuts: tuple[bytes, list[int]]) -> None:
        stream, _ = stream_and_cuts
        self.assertEqual(parse(*(stream[i:i + 1] for i in range(len(stream)))), parse(stream))
