"""Instance stores: where instance and router documents live (sqlite is the embedded default)."""
