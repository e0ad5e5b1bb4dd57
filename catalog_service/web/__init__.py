"""The merchant's pages: sign-in, settings, reference images and the render gallery (server-rendered)."""

from . import renders, settings, signin, thumbs
from .common import bp

__all__ = ["bp", "renders", "settings", "signin", "thumbs"]
