"""Accounts: sign-up by role, sign-in, email verification, profiles and staff administration."""
