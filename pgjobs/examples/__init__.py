"""Small example applications shipped with pgjobs (used by the README's first command)."""
