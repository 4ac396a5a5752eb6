"""The call journal: every ended call's record, committed to SQLite (``store``), written
off the reactor thread (``writer``), delivered to the user's application through an
outbox (``outbox``), and read by ``voiced-records`` (``cli``)."""
