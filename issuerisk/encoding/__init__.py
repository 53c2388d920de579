"""Sentence encoders and model resolution, shared by the embed actors, explain and topics."""
