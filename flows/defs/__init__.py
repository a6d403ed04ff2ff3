"""The flow definition files (YAML). A package only so that the files ship with flows."""
