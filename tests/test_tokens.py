"""Device tokens: what they look like, so that every documented command form takes them."""

from __future__ import annotations

import argparse
import re

from server.auth import hash_token, new_token, token_matches


def test_tokens_never_start_with_a_dash_so_token_t_parses():
    # A leading '-' came up in about one draw in 64; 4,000 draws all but surely hit one.
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    for _ in range(4000):
        token = new_token()
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{42}", token), token
        assert parser.parse_args(["--token", token]).token == token


def test_a_token_matches_only_its_own_hash():
    token = new_token()
    assert token_matches(token, hash_token(token))
    assert not token_matches(new_token(), hash_token(token))
