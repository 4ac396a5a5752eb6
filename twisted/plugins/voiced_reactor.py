"""``twistd -r voiced``: the worker's lean epoll reactor (``voiced.reactor``) for a one-process daemon."""

from twisted.application.reactors import Reactor

voiced_reactor = Reactor("voiced", "voiced.reactor", "epoll without the per-read legacy log context (Linux)")
