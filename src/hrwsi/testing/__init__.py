"""Test doubles and the fault harness: code that exists to test hrwsi, never a production component.

- `nomad_emulator`: an emulator of the Nomad API subset hrwsi uses (the one test double the project
  allows, because no Nomad agent can be installed on the development machines);
- `nomad_api_schema` (and the pinned `nomad_api_fields/`): Nomad's own API field names, to check what
  hrwsi sends to and reads from Nomad;
- `nomad_recorder`: recording a real Nomad agent's answers (`make nomad-record`) and replaying them;
- `chaos`, `chaos_routine`: the fault-injection harness behind `make chaos` and its routine.
"""
