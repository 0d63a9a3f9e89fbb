"""What a GitSource's status says of git's complaints (reconcilers/git.py's _summary): read from git's words,
never from the URL it quotes, whose port or path may hold anything ("401", "redirect")."""

from __future__ import annotations

import pytest

from reconcilers.git import _summary

ASKS = "the repository asks for credentials and the source has none (spec.secretRef)"


@pytest.mark.parametrize(
    ("stderr", "authenticated", "said"),
    [
        # A test server's random port once held "401": every failure read as a refused password.
        (
            b"fatal: could not read Username for 'http://127.0.0.1:40199': terminal prompts disabled\n",
            False,
            ASKS,
        ),
        (
            b"fatal: could not read Username for 'http://127.0.0.1:40199': terminal prompts disabled\n",
            True,
            "authentication failed",
        ),
        (b"fatal: Authentication failed for 'http://127.0.0.1:8080/x.git/'\n", True, "authentication failed"),
        (
            b"error: The requested URL returned error: 401\nfatal: could not fetch\n",
            True,
            "authentication failed",
        ),
        (
            b"remote: Repository not found.\n"
            b"fatal: repository 'https://git.example.org/redirect.git/' not found\n",
            False,
            "no repository there",
        ),
        (
            b"fatal: unable to access 'https://h.example:4010/x.git/': Could not resolve host: h.example\n",
            False,
            "unable to access 'https://h.example:4010/x.git/': Could not resolve host: h.example",
        ),
        (
            b"git@401.example.org:redirect.git: Permission denied (publickey).\n",
            True,
            "the SSH server refused the source's identity",
        ),
    ],
)
def test_git_s_complaint_is_read_from_its_words_not_from_the_url(stderr, authenticated, said):
    assert _summary(stderr, authenticated=authenticated) == said
