"""The risk matrix, its bootstrap confidence and the survival (time-to-resolve) estimates, as pure code shared by the
risk stage and the report."""
