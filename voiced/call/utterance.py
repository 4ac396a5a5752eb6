"""What the caller has said in the current turn, as STT reports it: the finals so far,
the latest partial, when the last final came, and how many finals the engine still
owes for flushes (an utterance engine answers each flush with one). Pure state with
the rules about it; the turn machine decides what to do with them."""

from __future__ import annotations


class Utterance:
    def __init__(self) -> None:
        self.finals: list[str] = []
        self.partial = ""
        self.last_final_at: float | None = None
        #: Finals an utterance engine owes for its flushes.
        self.owed_finals = 0
        #: The next final belongs to a sound that was no turn (a backchannel over the bot).
        self.drop_next_final = False

    def said(self) -> str:
        """The finals, then the partial: everything heard so far."""
        partial = self.partial.strip()
        return " ".join(self.finals + ([partial] if partial else []))

    def heard_anything(self) -> bool:
        return bool(self.finals or self.partial.strip())

    def clear(self) -> None:
        self.finals, self.partial = [], ""

    def restart(self) -> None:
        """A new turn: nothing said, nothing owed."""
        self.clear()
        self.owed_finals = 0

    def take(self) -> tuple[str, bool]:
        """The text of the turn, and whether it ends on a partial; the utterance is cleared."""
        text, on_partial = self.said(), bool(self.partial.strip())
        self.clear()
        return text, on_partial

    def flushed(self) -> None:
        self.owed_finals += 1

    def final(self, text: str, now: float) -> None:
        if text.strip():
            self.finals.append(text.strip())
        self.partial = ""
        self.last_final_at = now
        self.final_owed_paid()

    def final_owed_paid(self) -> None:
        """A final came, or the engine gave up on one: it owes one fewer."""
        self.owed_finals = max(0, self.owed_finals - 1)

    def complete(self, streaming: bool, speech_end: float | None) -> bool:
        """The transcript covers the caller's last word."""
        if self.owed_finals:
            return False
        if not streaming:
            return True
        # A final that came before the caller's last word cannot cover that word.
        return (
            bool(self.finals)
            and not self.partial
            and self.last_final_at is not None
            and (speech_end is None or self.last_final_at >= speech_end)
        )

    def over_the_bot(self) -> None:
        """Speech over the bot too short to interrupt it ("uh-huh", a cough) ended: not a
        turn, and its final, still to come if a partial was seen, is not one either."""
        self.finals.clear()
        self.drop_next_final = bool(self.partial)
        self.partial = ""
