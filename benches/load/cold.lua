-- wrk script of the cold-token scenario: every request carries the next of the distinct
-- valid tokens in the file $COLD_TOKENS (one per line, written by examples/bench_env.rs),
-- as "Authorization: Bearer <token>", so a gateway must verify a signature for each one
-- that its cache cannot answer.
--
--   COLD_TOKENS=/tmp/x/env.cold COLD_THREADS=2 wrk -t2 -c32 -d10s -s benches/load/cold.lua URL
--
-- Thread t of COLD_THREADS (default 2, set it to wrk's -t) sends tokens t+1, t+1+T,
-- t+1+2T, ...: between two uses of one token all the threads together send every other
-- token once.

local threads = 0

function setup(thread)
    thread:set("id", threads)
    threads = threads + 1
end

function init(args)
    local path = os.getenv("COLD_TOKENS")
    if not path then
        error("COLD_TOKENS names no file")
    end
    tokens = {}
    for line in io.lines(path) do
        if #line > 0 then
            tokens[#tokens + 1] = "Bearer " .. line
        end
    end
    if #tokens == 0 then
        error("no tokens in " .. path)
    end
    stride = tonumber(os.getenv("COLD_THREADS") or "2")
    next_index = (id or 0) % #tokens
end

function request()
    next_index = (next_index + stride) % #tokens
    return wrk.format(nil, nil, { ["Authorization"] = tokens[next_index + 1] })
end
