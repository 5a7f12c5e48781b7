// Switches read from the environment on every call (a getenv, far below a launch's cost), so one process can run
// and compare the kernels they choose between: FLASH_ATTN_FORCE_SM80 (the binding) and the sm90 forward's variant
// switches (sm90/fwd_launch.h). Host code.
#pragma once

#include <cstdlib>

namespace flash {

// Unset or empty: fallback; "0": off; any other value: on.
inline bool env_switch(char const* name, bool fallback) {
  char const* v = std::getenv(name);
  if (v == nullptr || v[0] == '\0') { return fallback; }
  return !(v[0] == '0' && v[1] == '\0');
}

}  // namespace flash
