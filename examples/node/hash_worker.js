// A Node worker for node_pool.cpp: each message {"id":..,"text":..} is answered with the SHA-256
// of the text, computed by Node's crypto module.
const { createHash } = require('crypto');

process.on('message', (m) => {
  process.send({ id: m.id, sha256: createHash('sha256').update(m.text).digest('hex'), pid: process.pid });
});
