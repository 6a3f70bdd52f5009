-- greet.Greeter's SayHello and LotsOfReplies for nginx's Lua module (benchmarks/nginx_greeter.py
-- writes the nginx.conf that loads this file with init_by_lua_file and calls these handlers).
--
-- The same replies as greeter's service: SayHello -> "Hello " .. name; LotsOfReplies -> `count`
-- replies, the i-th (from 1) "Hello NAME #i". The request's one uncompressed gRPC message is
-- decoded (HelloRequest: 1 name string, 2 count varint); a request that is not one such message
-- ends with grpc-status 3 (INVALID_ARGUMENT) and no reply. The config adds the response's
-- content-type and its grpc-status trailer (from $grpc_status).

local bit = require "bit"
local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte, char, sub, concat = string.byte, string.char, string.sub, table.concat

local INVALID_ARGUMENT = "3"

local function read_varint(s, i)
  local value, shift = 0, 0
  while true do
    local b = byte(s, i)
    if b == nil or shift > 21 then
      return nil, i
    end
    i = i + 1
    value = value + lshift(band(b, 0x7f), shift)
    if b < 0x80 then
      return value, i
    end
    shift = shift + 7
  end
end

local function varint(n)
  local out = {}
  while n >= 0x80 do
    out[#out + 1] = char(bor(band(n, 0x7f), 0x80))
    n = rshift(n, 7)
  end
  out[#out + 1] = char(n)
  return concat(out)
end

-- HelloReply{message} as one uncompressed gRPC message.
local function reply(message)
  local payload = "\10" .. varint(#message) .. message
  local n = #payload
  return "\0" .. char(band(rshift(n, 24), 255), band(rshift(n, 16), 255),
    band(rshift(n, 8), 255), band(n, 255)) .. payload
end

-- The request's HelloRequest (name, count), or nil when the body is not one gRPC message
-- holding one.
local function hello_request()
  -- The response headers carry content-type only (no server, no date): what a gRPC server sends.
  ngx.header["Server"] = nil
  ngx.header["Date"] = nil
  if not ngx.req.get_body_data() then
    -- One turn of nginx's event loop first: the DATA frame that came with the HEADERS gets
    -- parsed, so nginx reads a complete body and sends no stream WINDOW_UPDATE for it.
    ngx.sleep(0)
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body == nil or #body < 5 or byte(body, 1) ~= 0 then
    return nil
  end
  local size = lshift(byte(body, 2), 24) + lshift(byte(body, 3), 16)
    + lshift(byte(body, 4), 8) + byte(body, 5)
  if #body ~= 5 + size then
    return nil
  end
  local name, count, i = "", 0, 6
  while i <= #body do
    local tag = byte(body, i)
    i = i + 1
    if tag == 10 then
      local n
      n, i = read_varint(body, i)
      if n == nil or i + n - 1 > #body then
        return nil
      end
      name = sub(body, i, i + n - 1)
      i = i + n
    elseif tag == 16 then
      count, i = read_varint(body, i)
      if count == nil then
        return nil
      end
    else
      return nil
    end
  end
  return name, count
end

function say_hello()
  local name = hello_request()
  if name == nil then
    ngx.var.grpc_status = INVALID_ARGUMENT
    return
  end
  ngx.print(reply("Hello " .. name))
end

local last_key, last_replies -- the benchmark asks for the same replies over and over

function lots_of_replies()
  local name, count = hello_request()
  if name == nil then
    ngx.var.grpc_status = INVALID_ARGUMENT
    return
  end
  local key = count .. "\0" .. name
  if key ~= last_key then
    local replies = {}
    for i = 1, count do
      replies[i] = reply("Hello " .. name .. " #" .. i)
    end
    last_key, last_replies = key, concat(replies)
  end
  if count > 0 then
    ngx.print(last_replies)
  end
end
