// Built with -fno-exceptions: the library must compile (and .value() abort instead of throw).
#include <childproc.hpp>

namespace cp = childproc;

int no_exceptions_use() {
  auto r = cp::exec("true");
  if (!r) return 1;
  auto p = cp::spawn("true", {}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}});
  return p.value().wait().value().exit_code().value_or(-1);
}
