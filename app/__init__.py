"""Tern: a private, offline desktop assistant for Gemma models."""

APP_NAME = "Tern"
APP_ID = "tern"
__version__ = "0.1.0"
