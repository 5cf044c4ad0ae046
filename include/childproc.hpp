// SPDX-License-Identifier: BSL-1.0
// Umbrella header: every public header of childproc, no code.
#ifndef CHILDPROC_HPP
#define CHILDPROC_HPP

#include "childproc/config.hpp"  // first: it says so plainly when the standard is older than C++20
#include "childproc/channel.hpp"
#include "childproc/error.hpp"
#include "childproc/event_loop.hpp"
#include "childproc/exec.hpp"
#include "childproc/exit_status.hpp"
#include "childproc/fork.hpp"
#include "childproc/options.hpp"
#include "childproc/output.hpp"
#include "childproc/pipeline.hpp"
#include "childproc/process.hpp"
#include "childproc/result.hpp"
#include "childproc/spawn.hpp"
#include "childproc/stream.hpp"
#include "childproc/task.hpp"
#include "childproc/version.hpp"

#endif
