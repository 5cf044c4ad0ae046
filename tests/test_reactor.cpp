// The reactor under exec and the event loop: timers, reads, writes, exits, cancellation.
#include "helpers.hpp"

#include <childproc/detail/reactor.hpp>
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code through it

#include <chrono>

using namespace std::chrono_literals;
namespace d = cp::detail;

namespace {
struct recording_io : d::io_op {
  int completions = 0;
  recording_io(cp::native_handle h, char* buffer, std::size_t n, bool is_write) {
    handle = h;
    data = buffer;
    size = n;
    write = is_write;
    complete = [](d::reactor_op* o) { ++static_cast<recording_io*>(o)->completions; };
  }
};
}  // namespace

TEST_CASE("timers fire in deadline order; a cancelled one never fires") {
  d::reactor r;
  REQUIRE(r.open());
  std::vector<int> order;
  struct t : d::timer_op {
    std::vector<int>* order;
    int id;
  };
  t a{}, b{}, c{};
  for (auto [tm, id] : {std::pair{&a, 1}, {&b, 2}, {&c, 3}}) {
    tm->order = &order;
    tm->id = id;
    tm->complete = [](d::reactor_op* op) { auto* x = static_cast<t*>(op); x->order->push_back(x->id); };
  }
  const auto now = d::reactor_clock::now();
  r.start_timer(&a, now + 30ms);
  r.start_timer(&b, now + 10ms);
  r.start_timer(&c, now + 20ms);
  r.cancel_timer(&c);
  while (order.size() < 2) REQUIRE(r.run_once(now + 1s));
  CHECK(order == std::vector<int>{2, 1});
  CHECK(d::reactor_clock::now() - now >= 30ms);
}

TEST_CASE("a read completes with data, then with 0 at end of stream") {
  d::reactor r;
  REQUIRE(r.open());
  auto p = d::create_pipe_native(false);  // child writes, parent reads
  REQUIRE(p);
  char buf[16];
  recording_io op(p->parent.get(), buf, sizeof buf, false);
  int& done = op.completions;
  r.start_io(&op);
  REQUIRE(r.run_once(d::reactor_clock::now() + 20ms));
  CHECK(done == 0);  // nothing to read yet: still pending
  REQUIRE(d::write_some_native(p->child.get(), std::string_view("abc")).value() == 3);
  while (done == 0) REQUIRE(r.run_once());
  CHECK(!op.err);
  CHECK(std::string(buf, op.bytes) == "abc");
  p->child.reset();
  r.start_io(&op);
  while (done == 1) REQUIRE(r.run_once());
  CHECK(!op.err);
  CHECK(op.bytes == 0);
  r.forget(p->parent.get());  // the contract: forget before closing (Win32: the shared port's binding)
}

TEST_CASE("cancel completes a pending read with ECANCELED") {
  d::reactor r;
  REQUIRE(r.open());
  auto p = d::create_pipe_native(false);
  REQUIRE(p);
  char buf[4];
  recording_io op(p->parent.get(), buf, sizeof buf, false);
  int& done = op.completions;
  r.start_io(&op);
  r.cancel(p->parent.get());
  REQUIRE(r.run_once());
  CHECK(done == 1);
  CHECK(op.err == std::errc::operation_canceled);
  r.forget(p->parent.get());
}

TEST_CASE("a write to a pipe whose reader is gone is EPIPE") {
  d::reactor r;
  REQUIRE(r.open());
  auto p = d::create_pipe_native(true);  // parent writes
  REQUIRE(p);
  p->child.reset();
  recording_io op(p->parent.get(), const_cast<char*>("x"), 1, true);
  int& done = op.completions;
  r.start_io(&op);
  REQUIRE(r.run_once());
  CHECK(done == 1);
  CHECK(op.err == std::errc::broken_pipe);
  r.forget(p->parent.get());
}

TEST_CASE("an exit wait completes when the child ends, without reaping it") {
  d::reactor r;
  REQUIRE(r.open());
  auto p = cp::spawn(child_path(), {"sleep", "50"}, {.stdio = {cp::ignore, cp::ignore, cp::ignore}}).value();
  struct ev : d::exit_op {
    bool fired = false;
  } op{};
  op.child = &p.native();
  op.complete = [](d::reactor_op* o) { static_cast<ev*>(o)->fired = true; };
  r.start_exit_wait(&op);
  while (!op.fired) REQUIRE(r.run_once());
  CHECK(!op.err);
  CHECK(p.wait()->success());  // still ours to reap
}

TEST_CASE("a timer cancelled by another that fired in the same round does not run") {
  d::reactor r;
  REQUIRE(r.open());
  struct t : d::timer_op {
    d::reactor* r = nullptr;
    t* other = nullptr;
    int runs = 0;
  } a, b;
  a.r = b.r = &r;
  a.other = &b;
  b.other = &a;
  a.complete = b.complete = [](d::reactor_op* op) {
    auto* x = static_cast<t*>(op);
    ++x->runs;
    x->r->cancel_timer(x->other);
  };
  const auto when = d::reactor_clock::now() + 5ms;
  r.start_timer(&a, when);
  r.start_timer(&b, when);
  while (a.runs + b.runs == 0) REQUIRE(r.run_once());
  REQUIRE(r.run_once(d::reactor_clock::now() + 20ms));
  CHECK(a.runs + b.runs == 1);
}

TEST_CASE("a timer withdrawn, armed or fired in this round, is never run nor reached again: its memory may go") {
  d::reactor r;
  REQUIRE(r.open());
  struct t : d::timer_op {
    d::reactor* r = nullptr;
    std::unique_ptr<t>* other = nullptr;
    int* runs = nullptr;
  };
  int runs = 0;
  std::unique_ptr<t> a = std::make_unique<t>(), b = std::make_unique<t>(), armed = std::make_unique<t>();
  for (auto* p : {&a, &b}) {
    (*p)->r = &r;
    (*p)->other = p == &a ? &b : &a;
    (*p)->runs = &runs;
    (*p)->complete = [](d::reactor_op* op) {  // the first to run frees the other, fired too
      auto* x = static_cast<t*>(op);
      ++*x->runs;
      x->r->withdraw(x->other->get());
      x->other->reset();
    };
  }
  armed->complete = [](d::reactor_op*) { FAIL("a withdrawn timer ran"); };
  const auto when = d::reactor_clock::now() + 5ms;
  r.start_timer(a.get(), when);
  r.start_timer(b.get(), when);
  r.start_timer(armed.get(), when + 10ms);
  r.withdraw(armed.get());
  armed.reset();
  while (runs == 0) REQUIRE(r.run_once());
  REQUIRE(r.run_once(d::reactor_clock::now() + 30ms));
  CHECK(runs == 1);
  CHECK((a == nullptr) != (b == nullptr));
  CHECK(!r.busy());
}

TEST_CASE("a timer withdrawn inside a nested round is taken out of the enclosing round's rest too") {
  d::reactor r;
  REQUIRE(r.open());
  struct t : d::timer_op {
    d::reactor* r = nullptr;
    std::unique_ptr<t>* victim = nullptr;  // for `inner`: withdrawn and freed
    t* inner = nullptr;                    // for `first`: armed, then run in a nested round
    int runs = 0;
  };
  auto first = std::make_unique<t>(), victim = std::make_unique<t>(), inner = std::make_unique<t>();
  first->r = inner->r = &r;
  first->inner = inner.get();
  inner->victim = &victim;
  first->complete = [](d::reactor_op* op) {  // runs ahead of `victim` in one round, then a round of its own
    auto* x = static_cast<t*>(op);
    ++x->runs;
    x->r->start_timer(x->inner, d::reactor_clock::now());
    while (x->inner->runs == 0) REQUIRE(x->r->run_once());
  };
  inner->complete = [](d::reactor_op* op) {
    auto* x = static_cast<t*>(op);
    ++x->runs;
    x->r->withdraw(x->victim->get());
    x->victim->reset();
  };
  victim->complete = [](d::reactor_op*) { FAIL("a withdrawn timer ran"); };
  const auto when = d::reactor_clock::now() + 5ms;
  r.start_timer(first.get(), when);
  r.start_timer(victim.get(), when + 1ms);
  while (d::reactor_clock::now() < when + 2ms) std::this_thread::sleep_for(1ms);  // both due in one round
  REQUIRE(r.run_once());
  CHECK(first->runs == 1);
  CHECK(inner->runs == 1);
  CHECK(victim == nullptr);
  CHECK(!r.busy());
}
