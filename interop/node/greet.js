'use strict';
// The Greeter service definition shared by client.js and server.js, loaded from ../../greet.proto.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_PATH = path.join(__dirname, '..', '..', 'greet.proto');

const packageDefinition = protoLoader.loadSync(PROTO_PATH, {
  keepCase: false,
  longs: Number, // HelloRequest.count is a uint32: a Number is exact
  enums: String,
  defaults: true,
  oneofs: true,
});
const { Greeter } = grpc.loadPackageDefinition(packageDefinition).greet;

module.exports = { grpc, Greeter };
