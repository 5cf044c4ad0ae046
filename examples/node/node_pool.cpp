// A C++ program that drives a pool of Node workers (hash_worker.js) over Node's own channel:
// fork_node starts each, send() gives it JSON, co_await receive() takes its JSON answer.
//   node_pool path/to/hash_worker.js [workers=4] [jobs=200]
#include <childproc.hpp>

#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace cp = childproc;

namespace {

// The string value of "name" in a flat JSON object Node wrote (a JSON library would do this in
// real code; here the answers are known to hold no escapes).
std::string field(std::string_view json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  const auto at = json.find(key);
  if (at == std::string_view::npos) return {};
  std::string_view v = json.substr(at + key.size());
  if (!v.empty() && v.front() == '"') return std::string(v.substr(1, v.find('"', 1) - 1));
  return std::string(v.substr(0, v.find_first_of(",}")));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: node_pool hash_worker.js [workers=4] [jobs=200]\n");
    return 2;
  }
  const int n_workers = argc > 2 ? std::atoi(argv[2]) : 4, n_jobs = argc > 3 ? std::atoi(argv[3]) : 200;
  std::vector<cp::process> workers;
  for (int i = 0; i < n_workers; ++i) {
    auto w = cp::fork_node(argv[1]);  // `node` from PATH; .exec_path names another
    if (!w) {
      std::fprintf(stderr, "%s\n", w.error().message().c_str());
      return 1;
    }
    workers.push_back(std::move(*w));
  }

  int next = 0, done = 0;
  std::set<std::string> pids;
  std::string first;  // the hash of job 0, "abc"
  auto serve = [&](cp::process& w) -> cp::task<bool> {
    while (next < n_jobs) {
      const int id = next++;
      const std::string text = id == 0 ? "abc" : "job " + std::to_string(id);
      if (!w.send("{\"id\":" + std::to_string(id) + ",\"text\":\"" + text + "\"}")) co_return false;
      auto answer = co_await w.receive();
      if (!answer || field(answer->str(), "id") != std::to_string(id)) co_return false;
      if (id == 0) first = field(answer->str(), "sha256");
      pids.insert(field(answer->str(), "pid"));
      ++done;
    }
    w.disconnect();  // the Node worker has nothing left to do: it exits 0
    co_return true;
  };
  std::vector<cp::task<bool>> tasks;
  for (auto& w : workers) tasks.push_back(serve(w));
  bool ok = true;
  for (bool b : cp::sync_wait(cp::when_all(std::move(tasks)))) ok = ok && b;
  for (auto& w : workers) ok = ok && w.wait().value().success();

  std::printf("%d of %d jobs hashed by %zu Node workers; sha256(\"abc\") = %s\n", done, n_jobs, pids.size(), first.c_str());
  return ok && done == n_jobs && first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" ? 0 : 1;
}
