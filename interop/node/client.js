'use strict';
// grpc-js interop client for greeter's tests.
//
//   node client.js TARGET SCENARIO [ARGS...]
//
// Runs one scenario against TARGET (host:port, plaintext) and prints exactly ONE JSON line on
// stdout. Every line has `scenario`, `code` (the gRPC status number), `code_name` and `details`;
// a scenario that ended with an error status still exits 0 (the status is the result). Exit 2
// means bad usage, exit 1 an unexpected failure of the client itself (message on stderr).
//
// Scenarios and their extra result fields:
//   unary NAME                SayHello                      message
//   server-stream NAME COUNT  LotsOfReplies                 messages
//   client-stream NAME...     LotsOfGreetings               message
//   bidi NAME...              BidiHello, ping-pong: the next request is written only after the
//                             reply to the previous one arrived (proves per-message replies)
//                                                           messages
//   deadline MS [NAME]        SayHello with a deadline of MS milliseconds
//                                                           message (on OK)
//   metadata                  SayHello with custom metadata (incl. a -bin key and x-echo)
//                                                           message, sent, initial_metadata, trailers
//   large BYTES               SayHello with a name of BYTES 'x'; 8 MiB send/receive limits
//                                                           reply_length
//   compressed NAME           SayHello with gzip as the channel's default compression
//                                                           message
//
// Metadata is printed as {key: [values]}; -bin values are base64 strings.

const { grpc, Greeter } = require('./greet');

const DEFAULT_DEADLINE_MS = 10000; // no scenario may hang the test that runs it
const EIGHT_MIB = 8 * 1024 * 1024;
const GZIP = 2; // grpc-js compression algorithm id: 0 identity, 1 deflate, 2 gzip

const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, code]) => [code, name]),
);

function metadataToJSON(metadata) {
  const result = {};
  if (!metadata) {
    return result;
  }
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    result[key] = values.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : String(v)));
  }
  return result;
}

// Loopback only: never route a test call through an http(s)_proxy from the environment.
function newClient(target, options = {}) {
  return new Greeter(target, grpc.credentials.createInsecure(), {
    'grpc.enable_http_proxy': 0,
    ...options,
  });
}

function deadlineIn(ms) {
  return new Date(Date.now() + ms);
}

// Resolves once the call's final status arrived, with what the call observed.
// `done` (optional) is a promise the status must also wait for, e.g. the unary callback or the
// end of the response stream, so that every response message is counted before printing.
function observe(call, done = Promise.resolve()) {
  let initialMetadata = null;
  call.on('metadata', (md) => {
    initialMetadata = md;
  });
  const status = new Promise((resolve) => call.on('status', resolve));
  return Promise.all([status, done]).then(([st]) => ({
    code: st.code,
    code_name: STATUS_NAMES[st.code] || 'UNKNOWN_CODE',
    details: st.details,
    initialMetadata,
    trailers: st.metadata,
  }));
}

// Unary and client-streaming calls: start(callback) issues the call and returns it.
async function callbackCall(start) {
  let reply = null;
  let call;
  const done = new Promise((resolve) => {
    call = start((err, value) => {
      reply = err ? null : value;
      resolve();
    });
  });
  const result = await observe(call, done);
  return { ...result, reply };
}

// Server-streaming and bidi calls: collects every reply until the stream ends or fails.
function collectReplies(call, onReply = () => {}) {
  const messages = [];
  const done = new Promise((resolve) => {
    call.on('data', (reply) => {
      messages.push(reply.message);
      onReply(reply);
    });
    call.on('end', resolve);
    call.on('error', resolve); // non-OK status: reported through the status event
  });
  return observe(call, done).then((result) => ({ ...result, messages }));
}

function sayHello(client, request, metadata = new grpc.Metadata(), deadlineMs = DEFAULT_DEADLINE_MS) {
  return callbackCall((cb) => client.sayHello(request, metadata, { deadline: deadlineIn(deadlineMs) }, cb));
}

function summary(scenario, result, extra) {
  return { scenario, code: result.code, code_name: result.code_name, details: result.details, ...extra };
}

const scenarios = {
  async unary(target, [name = 'world']) {
    const r = await sayHello(newClient(target), { name });
    return summary('unary', r, { message: r.reply && r.reply.message });
  },

  async 'server-stream'(target, [name = 'world', count = '3']) {
    const client = newClient(target);
    const call = client.lotsOfReplies(
      { name, count: Number(count) },
      { deadline: deadlineIn(DEFAULT_DEADLINE_MS) },
    );
    const r = await collectReplies(call);
    return summary('server-stream', r, { messages: r.messages });
  },

  async 'client-stream'(target, names) {
    const client = newClient(target);
    const r = await callbackCall((cb) => {
      const call = client.lotsOfGreetings({ deadline: deadlineIn(DEFAULT_DEADLINE_MS) }, cb);
      for (const name of names) {
        call.write({ name });
      }
      call.end();
      return call;
    });
    return summary('client-stream', r, { message: r.reply && r.reply.message });
  },

  async bidi(target, names) {
    const client = newClient(target);
    const call = client.bidiHello({ deadline: deadlineIn(DEFAULT_DEADLINE_MS) });
    const pending = [...names];
    const writeNextOrEnd = () => {
      if (pending.length > 0) {
        call.write({ name: pending.shift() });
      } else {
        call.end();
      }
    };
    const result = collectReplies(call, writeNextOrEnd);
    writeNextOrEnd();
    const r = await result;
    return summary('bidi', r, { messages: r.messages });
  },

  async deadline(target, [ms, name = 'deadline']) {
    const client = newClient(target);
    const r = await sayHello(client, { name }, new grpc.Metadata(), Number(ms));
    return summary('deadline', r, { deadline_ms: Number(ms), message: r.reply && r.reply.message });
  },

  async metadata(target) {
    const client = newClient(target);
    const md = new grpc.Metadata();
    md.set('x-echo', 'echo-me');
    md.set('x-custom', 'custom-value');
    md.add('x-multi', 'one');
    md.add('x-multi', 'two');
    md.set('x-trace-bin', Buffer.from([0x00, 0x01, 0xfe, 0xff]));
    const r = await sayHello(client, { name: 'metadata' }, md);
    return summary('metadata', r, {
      message: r.reply && r.reply.message,
      sent: metadataToJSON(md),
      initial_metadata: metadataToJSON(r.initialMetadata),
      trailers: metadataToJSON(r.trailers),
    });
  },

  async large(target, [bytes]) {
    const client = newClient(target, {
      'grpc.max_receive_message_length': EIGHT_MIB,
      'grpc.max_send_message_length': EIGHT_MIB,
    });
    const r = await sayHello(client, { name: 'x'.repeat(Number(bytes)) });
    return summary('large', r, { reply_length: r.reply ? r.reply.message.length : null });
  },

  async compressed(target, [name = 'gzip']) {
    const client = newClient(target, {
      'grpc.default_compression_algorithm': GZIP,
    });
    const r = await sayHello(client, { name });
    return summary('compressed', r, { message: r.reply && r.reply.message });
  },
};

async function main(argv) {
  const [target, scenario, ...args] = argv;
  const run = Object.hasOwn(scenarios, scenario || '') ? scenarios[scenario] : null;
  if (!target || !run) {
    process.stderr.write(
      `usage: node client.js TARGET SCENARIO [ARGS...]\nscenarios: ${Object.keys(scenarios).join(', ')}\n`,
    );
    process.exit(2);
  }
  const result = await run(target, args);
  // Channels keep the event loop alive: leave once the one line is flushed.
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`client.js failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
