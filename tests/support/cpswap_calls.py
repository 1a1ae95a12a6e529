"""Every ``cpswap`` call inside a rendered command text (test-only).

A command resource's text is shell: ``rc=0; timeout ... sh -c '<script>' || rc=$?; ...``, scripts joined by
``&&`` and ``;``, pipes, ``sh -c`` nested in ``sh -c``. ``cpswap_calls`` splits the text the way the shell
does (POSIX quoting, control operators as their own tokens), descends into every ``sh -c``/``bash -c`` script,
and returns each ``cpswap`` word with the words after it up to the next control operator: the argv the shell
would hand to the cpswap executable (redirections end it).
"""
from __future__ import annotations

import shlex

SHELLS = ("sh", "bash", "/bin/sh", "/bin/bash")


def _words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def _is_operator(word: str) -> bool:
    return bool(word) and all(c in "();<>|&" for c in word)


def cpswap_calls(text: str, *, depth: int = 0) -> list[list[str]]:
    """The argv (without the ``cpswap`` word itself) of every cpswap call in ``text``, in order."""
    if depth > 4:
        raise ValueError(f"sh -c nested deeper than 4: {text[:120]!r}")
    words = _words(text)
    calls: list[list[str]] = []
    for i, word in enumerate(words):
        if word in SHELLS and i + 2 < len(words) and words[i + 1] == "-c":
            calls += cpswap_calls(words[i + 2], depth=depth + 1)
        elif word == "cpswap" or word.endswith("/cpswap"):
            argv = []
            for arg in words[i + 1:]:
                if _is_operator(arg):
                    break
                argv.append(arg)
            calls.append(argv)
    return calls
