"""Jobs: triggers and next-fire computation, the execution runner, the Huey app and its thin task."""
