"""Test doubles and the fault harness: code that exists to test hrwsi, never a production component.

- `nomad_emulator`: an emulator of the Nomad API subset hrwsi uses (the one test double the project
  allows, because no Nomad agent can be installed on the development machines);
- `chaos`, `chaos_routine`: the fault-injection harness behind `make chaos` and its routine.
"""
