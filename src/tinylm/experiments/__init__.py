"""The experiment suite (many runs from one YAML) and the report (tables and figures from run directories)."""
