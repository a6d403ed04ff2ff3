"""OPC UA driver tests."""
