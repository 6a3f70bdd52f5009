'use strict';
// gRPC's official interop test cases (doc/interop-test-descriptions.md) with grpc-js as the
// client, against any grpc.testing.TestService server (greeter's `interop-server` in the tests).
//
//   node interop_client.js --server_host=HOST --server_port=PORT --test_case=CASE|all
//
// The flags are those of gRPC's interop clients (plaintext only). Per case it prints
// `PASS <case>` on stdout, or `FAIL <case>: <what differed>` on stderr; the exit status is 0 only
// when every case passed, 2 for bad usage. Every call has a deadline (10 s), so no case hangs.
//
// What grpc-js cannot do, and so is not checked: the server_compressed_* cases' "if supported by
// the implementation" flag checks (grpc-js does not expose a received message's compressed
// flag); their calls and payloads are checked. The client_compressed_* cases choose compression
// per channel ('grpc.default_compression_algorithm') and per message (the NoCompress write flag).

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync('grpc/testing/test.proto', {
  keepCase: true, // the proto's field names, as the descriptions spell them
  longs: Number,
  enums: String,
  defaults: true,
  includeDirs: [PROTO_ROOT],
});
const testing = grpc.loadPackageDefinition(definition).grpc.testing;

const CALL_DEADLINE_MS = 10000;
const GZIP = 2; // grpc-js compression algorithm ids: 0 identity, 1 deflate, 2 gzip
const NO_COMPRESS = 2; // grpc-js WriteFlags.NoCompress: this message goes uncompressed
const ECHO_INITIAL = 'x-grpc-test-echo-initial';
const ECHO_INITIAL_VALUE = 'test_initial_metadata_value';
const ECHO_TRAILING = 'x-grpc-test-echo-trailing-bin';
const ECHO_TRAILING_VALUE = Buffer.from([0xab, 0xab, 0xab]);
const STATUS_MESSAGE = 'test status message';
const SPECIAL_STATUS_MESSAGE =
  '\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \u{1f608}\t\n';
const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, code]) => [code, name]),
);

class CaseFailed extends Error {}

function expect(condition, what) {
  if (!condition) {
    throw new CaseFailed(what);
  }
}

function statusName(code) {
  return STATUS_NAMES[code] || `code ${code}`;
}

function deadline(ms = CALL_DEADLINE_MS) {
  return { deadline: new Date(Date.now() + ms) };
}

function zeros(size) {
  return { type: 'COMPRESSABLE', body: Buffer.alloc(size) };
}

function expectZeros(payload, size, what) {
  expect(payload, `${what}: no payload`);
  const body = payload.body || Buffer.alloc(0);
  expect(body.length === size, `${what}: payload of ${body.length} bytes, expected ${size}`);
  expect(body.every((byte) => byte === 0), `${what}: payload bytes are not all zero`);
}

function largeUnaryRequest(fields = {}) {
  return { response_type: 'COMPRESSABLE', response_size: 314159, payload: zeros(271828), ...fields };
}

function outputRequest(sizes, body = 0, fields = {}) {
  return {
    response_type: 'COMPRESSABLE',
    response_parameters: sizes.map((size) => ({ size })),
    payload: body ? zeros(body) : undefined,
    ...fields,
  };
}

// A unary or client-streaming call: start(callback) issues it and returns the call object.
// Resolves with { error, response, initial, status } once the final status arrived.
function finished(start) {
  return new Promise((resolve) => {
    const seen = { error: null, response: null, initial: null, status: null };
    let callbackDone = false;
    const settle = () => {
      if (callbackDone && seen.status) {
        resolve(seen);
      }
    };
    const call = start((error, response) => {
      seen.error = error;
      seen.response = response;
      callbackDone = true;
      settle();
    });
    call.on('metadata', (metadata) => {
      seen.initial = metadata;
    });
    call.on('status', (status) => {
      seen.status = status;
      settle();
    });
  });
}

// A server-streaming or bidi call: every response until the stream ends, then the status.
function streamed(call, onResponse = () => {}) {
  return new Promise((resolve) => {
    const seen = { responses: [], initial: null, status: null, ended: false };
    const settle = () => {
      if (seen.ended && seen.status) {
        resolve(seen);
      }
    };
    call.on('metadata', (metadata) => {
      seen.initial = metadata;
    });
    call.on('data', (response) => {
      seen.responses.push(response);
      onResponse(response, seen.responses.length);
    });
    const end = () => {
      seen.ended = true;
      settle();
    };
    call.on('end', end);
    call.on('error', end); // a non-OK status: reported through the status event as well
    call.on('status', (status) => {
      seen.status = status;
      settle();
    });
  });
}

function expectOk(seen, rpc) {
  const { code, details } = seen.status;
  expect(code === grpc.status.OK, `${rpc} failed: ${statusName(code)}: ${JSON.stringify(details)}`);
}

function expectStatus(seen, code, rpc) {
  const got = seen.status.code;
  expect(
    got === code,
    `${rpc}: status ${statusName(got)} (${JSON.stringify(seen.status.details)}), expected ${statusName(code)}`,
  );
}

function unary(client, method, request, { metadata = new grpc.Metadata(), options = {} } = {}) {
  return finished((cb) => client[method](request, metadata, { ...deadline(), ...options }, cb));
}

function clientStream(client, requests, flags = []) {
  return finished((cb) => {
    const call = client.streamingInputCall(deadline(), cb);
    requests.forEach((request, index) => call.write(request, flags[index]));
    call.end();
    return call;
  });
}

// -- the cases ----------------------------------------------------------------------------------

async function emptyUnary({ test }) {
  const seen = await unary(test, 'emptyCall', {});
  expectOk(seen, 'EmptyCall');
  expect(seen.response && Object.keys(seen.response).length === 0, 'EmptyCall: response is not empty');
}

async function largeUnary({ test }) {
  const seen = await unary(test, 'unaryCall', largeUnaryRequest());
  expectOk(seen, 'UnaryCall');
  expectZeros(seen.response.payload, 314159, 'UnaryCall');
}

async function clientCompressedUnary({ test, gzipTest }) {
  const probe = await unary(test, 'unaryCall', largeUnaryRequest({ expect_compressed: { value: true } }));
  expectStatus(probe, grpc.status.INVALID_ARGUMENT, 'the feature probe (uncompressed, expect_compressed=true)');
  const compressed = await unary(
    gzipTest,
    'unaryCall',
    largeUnaryRequest({ expect_compressed: { value: true } }),
  );
  expectOk(compressed, 'the compressed UnaryCall (expect_compressed=true)');
  expectZeros(compressed.response.payload, 314159, 'the compressed UnaryCall');
  const plain = await unary(test, 'unaryCall', largeUnaryRequest({ expect_compressed: { value: false } }));
  expectOk(plain, 'the uncompressed UnaryCall (expect_compressed=false)');
  expectZeros(plain.response.payload, 314159, 'the uncompressed UnaryCall');
}

async function serverCompressedUnary({ test }) {
  for (const compressed of [true, false]) {
    const rpc = `UnaryCall (response_compressed=${compressed})`;
    const seen = await unary(test, 'unaryCall', largeUnaryRequest({ response_compressed: { value: compressed } }));
    expectOk(seen, rpc);
    expectZeros(seen.response.payload, 314159, rpc);
  }
}

async function clientStreaming({ test }) {
  const sizes = [27182, 8, 1828, 45904];
  const seen = await clientStream(test, sizes.map((size) => ({ payload: zeros(size) })));
  expectOk(seen, 'StreamingInputCall');
  const total = seen.response.aggregated_payload_size;
  expect(total === 74922, `StreamingInputCall: aggregated_payload_size ${total}, expected 74922`);
}

async function clientCompressedStreaming({ gzipTest }) {
  const probe = await clientStream(
    gzipTest,
    [{ payload: zeros(27182), expect_compressed: { value: true } }],
    [NO_COMPRESS],
  );
  expectStatus(probe, grpc.status.INVALID_ARGUMENT, 'the feature probe (uncompressed, expect_compressed=true)');
  const seen = await clientStream(
    gzipTest,
    [
      { payload: zeros(27182), expect_compressed: { value: true } },
      { payload: zeros(45904), expect_compressed: { value: false } },
    ],
    [0, NO_COMPRESS],
  );
  expectOk(seen, 'the compressed StreamingInputCall');
  const total = seen.response.aggregated_payload_size;
  expect(total === 73086, `the compressed StreamingInputCall: aggregated_payload_size ${total}, expected 73086`);
}

async function expectStreamedSizes(call, sizes, rpc) {
  const seen = await streamed(call);
  expectOk(seen, rpc);
  expect(
    seen.responses.length === sizes.length,
    `${rpc}: ${seen.responses.length} responses, expected ${sizes.length}`,
  );
  seen.responses.forEach((response, index) => expectZeros(response.payload, sizes[index], `${rpc} response ${index + 1}`));
}

async function serverStreaming({ test }) {
  const sizes = [31415, 9, 2653, 58979];
  const call = test.streamingOutputCall(outputRequest(sizes), deadline());
  await expectStreamedSizes(call, sizes, 'StreamingOutputCall');
}

async function serverCompressedStreaming({ test }) {
  const request = {
    response_type: 'COMPRESSABLE',
    response_parameters: [
      { size: 31415, compressed: { value: true } },
      { size: 92653, compressed: { value: false } },
    ],
  };
  const call = test.streamingOutputCall(request, deadline());
  await expectStreamedSizes(call, [31415, 92653], 'StreamingOutputCall');
}

async function pingPong({ test }) {
  const responseSizes = [31415, 9, 2653, 58979];
  const bodies = [27182, 8, 1828, 45904];
  const rpc = 'FullDuplexCall';
  const call = test.fullDuplexCall(deadline());
  const seen = streamed(call, (response, count) => {
    // The next request only once the previous one's response is in (ping-pong).
    if (count < responseSizes.length) {
      call.write(outputRequest([responseSizes[count]], bodies[count]));
    } else {
      call.end();
    }
  });
  call.write(outputRequest([responseSizes[0]], bodies[0]));
  const done = await seen;
  expectOk(done, rpc);
  expect(done.responses.length === 4, `${rpc}: ${done.responses.length} responses, expected 4`);
  done.responses.forEach((response, index) => expectZeros(response.payload, responseSizes[index], `${rpc} response ${index + 1}`));
}

async function emptyStream({ test }) {
  const call = test.fullDuplexCall(deadline());
  const seen = streamed(call);
  call.end();
  const done = await seen;
  expectOk(done, 'FullDuplexCall');
  expect(done.responses.length === 0, `FullDuplexCall: ${done.responses.length} responses, expected none`);
}

function echoMetadata() {
  const metadata = new grpc.Metadata();
  metadata.set(ECHO_INITIAL, ECHO_INITIAL_VALUE);
  metadata.set(ECHO_TRAILING, ECHO_TRAILING_VALUE);
  return metadata;
}

function expectEchoed(seen, rpc) {
  const initial = seen.initial ? seen.initial.get(ECHO_INITIAL) : [];
  expect(
    initial.length === 1 && initial[0] === ECHO_INITIAL_VALUE,
    `${rpc}: initial metadata ${ECHO_INITIAL} was ${JSON.stringify(initial)}, expected ${JSON.stringify(ECHO_INITIAL_VALUE)}`,
  );
  const trailing = seen.status.metadata.get(ECHO_TRAILING);
  expect(
    trailing.length === 1 && Buffer.isBuffer(trailing[0]) && trailing[0].equals(ECHO_TRAILING_VALUE),
    `${rpc}: trailing metadata ${ECHO_TRAILING} was ${JSON.stringify(trailing)}, expected abab ab`,
  );
}

async function customMetadata({ test }) {
  const seen = await unary(test, 'unaryCall', largeUnaryRequest(), { metadata: echoMetadata() });
  expectOk(seen, 'UnaryCall');
  expectZeros(seen.response.payload, 314159, 'UnaryCall');
  expectEchoed(seen, 'UnaryCall');

  const call = test.fullDuplexCall(echoMetadata(), deadline());
  const streaming = streamed(call);
  call.write(outputRequest([314159], 271828));
  call.end();
  const done = await streaming;
  expectOk(done, 'FullDuplexCall');
  expect(done.responses.length === 1, `FullDuplexCall: ${done.responses.length} responses, expected 1`);
  expectZeros(done.responses[0].payload, 314159, 'FullDuplexCall');
  expectEchoed(done, 'FullDuplexCall');
}

function expectEchoedStatus(seen, message, rpc) {
  expectStatus(seen, grpc.status.UNKNOWN, rpc); // code 2, as sent
  const got = seen.status.details;
  expect(got === message, `${rpc}: status message ${JSON.stringify(got)}, expected ${JSON.stringify(message)}`);
}

async function statusCodeAndMessage({ test }) {
  const echo = { code: grpc.status.UNKNOWN, message: STATUS_MESSAGE };
  expectEchoedStatus(await unary(test, 'unaryCall', { response_status: echo }), STATUS_MESSAGE, 'UnaryCall');
  const call = test.fullDuplexCall(deadline());
  const seen = streamed(call);
  call.write({ response_status: echo });
  call.end();
  expectEchoedStatus(await seen, STATUS_MESSAGE, 'FullDuplexCall');
}

async function specialStatusMessage({ test }) {
  const echo = { code: grpc.status.UNKNOWN, message: SPECIAL_STATUS_MESSAGE };
  const seen = await unary(test, 'unaryCall', { response_status: echo });
  expectEchoedStatus(seen, SPECIAL_STATUS_MESSAGE, 'UnaryCall');
}

async function unimplementedMethod({ test }) {
  const seen = await unary(test, 'unimplementedCall', {});
  expectStatus(seen, grpc.status.UNIMPLEMENTED, 'TestService/UnimplementedCall');
}

async function unimplementedService({ unimplemented }) {
  const seen = await unary(unimplemented, 'unimplementedCall', {});
  expectStatus(seen, grpc.status.UNIMPLEMENTED, 'UnimplementedService/UnimplementedCall');
}

async function cancelAfterBegin({ test }) {
  const seen = await finished((cb) => {
    const call = test.streamingInputCall(deadline(), cb);
    call.cancel();
    return call;
  });
  expectStatus(seen, grpc.status.CANCELLED, 'StreamingInputCall');
}

async function cancelAfterFirstResponse({ test }) {
  const call = test.fullDuplexCall(deadline());
  const seen = streamed(call, (response, count) => {
    if (count === 1) {
      expectZeros(response.payload, 31415, 'FullDuplexCall response 1');
      call.cancel();
    }
  });
  call.write(outputRequest([31415], 27182));
  const done = await seen;
  expect(done.responses.length === 1, `FullDuplexCall: ${done.responses.length} responses, expected 1`);
  expectStatus(done, grpc.status.CANCELLED, 'FullDuplexCall');
}

async function timeoutOnSleepingServer({ test }) {
  const call = test.fullDuplexCall(deadline(1));
  const seen = streamed(call);
  call.write({ payload: zeros(27182) }); // no response asked for; never half-closed
  expectStatus(await seen, grpc.status.DEADLINE_EXCEEDED, 'FullDuplexCall with a 1 ms deadline');
}

const CASES = {
  empty_unary: emptyUnary,
  large_unary: largeUnary,
  client_compressed_unary: clientCompressedUnary,
  server_compressed_unary: serverCompressedUnary,
  client_streaming: clientStreaming,
  client_compressed_streaming: clientCompressedStreaming,
  server_streaming: serverStreaming,
  server_compressed_streaming: serverCompressedStreaming,
  ping_pong: pingPong,
  empty_stream: emptyStream,
  custom_metadata: customMetadata,
  status_code_and_message: statusCodeAndMessage,
  special_status_message: specialStatusMessage,
  unimplemented_method: unimplementedMethod,
  unimplemented_service: unimplementedService,
  cancel_after_begin: cancelAfterBegin,
  cancel_after_first_response: cancelAfterFirstResponse,
  timeout_on_sleeping_server: timeoutOnSleepingServer,
};

// -- the command --------------------------------------------------------------------------------

function usage(problem) {
  process.stderr.write(
    `interop_client.js: ${problem}\nusage: node interop_client.js --server_host=HOST` +
      ` --server_port=PORT --test_case=CASE\ncases: ${Object.keys(CASES).join(', ')}, all\n`,
  );
  process.exit(2);
}

function parseFlags(argv) {
  const flags = { server_host: 'localhost', server_port: null, test_case: 'large_unary' };
  for (const arg of argv) {
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match || !Object.hasOwn(flags, match[1])) {
      usage(`unknown argument ${JSON.stringify(arg)}`);
    }
    flags[match[1]] = match[2];
  }
  const port = Number(flags.server_port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    usage(`--server_port: expected a port 1-65535, got ${JSON.stringify(flags.server_port)}`);
  }
  if (flags.test_case !== 'all' && !Object.hasOwn(CASES, flags.test_case)) {
    usage(`--test_case: unknown case ${JSON.stringify(flags.test_case)}`);
  }
  const host = flags.server_host.includes(':') ? `[${flags.server_host}]` : flags.server_host;
  return { target: `${host}:${port}`, names: flags.test_case === 'all' ? Object.keys(CASES) : [flags.test_case] };
}

function clients(target) {
  // Loopback only: never route a call through an http(s)_proxy from the environment.
  const options = { 'grpc.enable_http_proxy': 0 };
  const credentials = grpc.credentials.createInsecure();
  return {
    test: new testing.TestService(target, credentials, options),
    gzipTest: new testing.TestService(target, credentials, {
      ...options,
      'grpc.default_compression_algorithm': GZIP,
    }),
    unimplemented: new testing.UnimplementedService(target, credentials, options),
  };
}

async function main(argv) {
  const { target, names } = parseFlags(argv);
  const stubs = clients(target);
  let failed = 0;
  for (const name of names) {
    try {
      await CASES[name](stubs);
      process.stdout.write(`PASS ${name}\n`);
    } catch (error) {
      failed += 1;
      const what = error instanceof CaseFailed ? error.message : `client error: ${error && error.stack}`;
      process.stderr.write(`FAIL ${name}: ${what.replace(/\r/g, '\\r').replace(/\n/g, '\\n')}\n`);
    }
  }
  for (const client of Object.values(stubs)) {
    client.close();
  }
  // grpc-js keeps timers of finished calls (their deadlines) alive: leave once stdout is flushed.
  process.stdout.write('', () => process.exit(failed ? 1 : 0));
}

main(process.argv.slice(2));
