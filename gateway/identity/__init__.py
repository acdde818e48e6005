"""Who is being measured: resident sessions, their profiles and pseudonyms, and the kiosk's local API."""

from healthhut.gateway.identity.sessions import Attribution, Profile, Session, SessionBook, age_band

__all__ = ["Attribution", "Profile", "Session", "SessionBook", "age_band"]
