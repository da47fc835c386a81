"""Pure rendering: a planned candidate -> engine command lines (engines/) and deployment files (targets/)."""
