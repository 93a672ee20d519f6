"""The domain core (pure Python): calendar, deadlines, dossier state machine, catalogue."""
