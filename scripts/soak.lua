-- wrk script for scripts/soak.sh: alternating encode and decode requests with a bearer token, an
-- optional pause per connection between requests (to hold a rate), and a count of answers by status
-- and error code. At the end one JSON line per run is appended to $SOAK_RESULTS.
--
-- Environment: SOAK_TOKEN, SOAK_ENCODE_BODY and SOAK_DECODE_BODY (files), SOAK_DELAY_MS (per
-- connection, between requests), SOAK_PHASE (label), SOAK_RESULTS (file to append to).

local function slurp(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local headers = {
    ["Content-Type"] = "application/json",
    ["X-Namespace"] = "soak",
    ["Authorization"] = "Bearer " .. os.getenv("SOAK_TOKEN"),
}
local encode_request, decode_request
local pause = tonumber(os.getenv("SOAK_DELAY_MS") or "0")
local sent = 0
counts = {}

local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    encode_request = wrk.format("POST", "/encode", headers, slurp(os.getenv("SOAK_ENCODE_BODY")))
    decode_request = wrk.format("POST", "/decode", headers, slurp(os.getenv("SOAK_DECODE_BODY")))
end

function request()
    sent = sent + 1
    if sent % 2 == 0 then
        return encode_request
    end
    return decode_request
end

if pause > 0 then
    function delay()
        return pause
    end
end

-- Encode answers carry the envelope encoding ("binary/kms-envelope", base64 below); decode answers the
-- plaintext's json/plain.
function response(status, _, body)
    local key
    if status == 200 then
        if body:find("YmluYXJ5L2ttcy1lbnZlbG9w", 1, true) then
            key = "200 encode"
        else
            key = "200 decode"
        end
    else
        key = status .. " " .. (body:match('"code":"([%w%-]+)"') or "-")
    end
    counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, _)
    local all = {}
    for _, thread in ipairs(threads) do
        for key, n in pairs(thread:get("counts")) do
            all[key] = (all[key] or 0) + n
        end
    end
    local parts = {}
    for key, n in pairs(all) do
        table.insert(parts, string.format('"%s":%d', key, n))
    end
    local e = summary.errors
    local line = string.format(
        '{"phase":"%s","duration_us":%d,"requests":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,'
            .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"answers":{%s}}\n',
        os.getenv("SOAK_PHASE") or "?",
        summary.duration,
        summary.requests,
        latency:percentile(50),
        latency:percentile(99),
        latency.max,
        e.connect,
        e.read,
        e.write,
        e.timeout,
        table.concat(parts, ",")
    )
    local f = assert(io.open(os.getenv("SOAK_RESULTS"), "a"))
    f:write(line)
    f:close()
end
