-- Drives Neovim's own LSP client (configured by the README's snippet, loaded with -u) over the
-- example monorepo, and writes what it got to $CHECK_RESULT as JSON for the Python test to judge.
--
--   CHECK_ROOT=<monorepo> CHECK_RESULT=<file.json> nvim --headless -u init.lua -l check.lua
--
-- Each step records its value or its error and the file is rewritten after every step, so a
-- failure shows how far it got. The script never judges; it ends with :qa! so Neovim stops the
-- client the way it does for a user (shutdown, exit).

local root = assert(os.getenv('CHECK_ROOT'), 'CHECK_ROOT')
local out = assert(os.getenv('CHECK_RESULT'), 'CHECK_RESULT')
local TIMEOUT = 90000
local results = {}

local function save()
  local file = assert(io.open(out, 'w'))
  file:write(vim.json.encode(results))
  file:close()
end

local function step(name, fn)
  local ok, value = pcall(fn)
  results[name] = ok and { value = value == nil and vim.NIL or value } or { error = tostring(value) }
  save()
  return ok and value or nil
end

local function open(relative)
  vim.cmd.edit(vim.fn.fnameescape(root .. '/' .. relative))
  local buf = vim.api.nvim_get_current_buf()
  local client
  local ready = vim.wait(TIMEOUT, function()
    client = vim.lsp.get_clients({ bufnr = buf, name = 'typemux' })[1]
    return client ~= nil and client.initialized == true
  end, 20)
  assert(ready, 'no typemux client attached to ' .. relative .. ' (filetype ' .. vim.bo[buf].filetype .. ')')
  return buf, client
end

-- The LSP position of the end of `needle` (or of its start + offset) in the buffer; with
-- `whole`, `needle` is a whole line.
local function at(buf, client, needle, offset, whole)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    local start = line:find(needle, 1, true)
    if start and (line == needle or not whole) then
      local byte = start - 1 + (offset or #needle)
      return {
        textDocument = { uri = vim.uri_from_bufnr(buf) },
        position = { line = i - 1, character = vim.str_utfindex(line, client.offset_encoding, byte) },
      }
    end
  end
  error('not in the buffer: ' .. needle)
end

local function request(client, buf, method, params)
  local response, err = client:request_sync(method, params, TIMEOUT, buf)
  assert(response, method .. ': ' .. tostring(err))
  if response.err then
    error(method .. ' failed: ' .. vim.inspect(response.err))
  end
  return response.result
end

local function items_of(result)
  if result == nil or result == vim.NIL then
    return {}
  end
  return result.items or result
end

local function find_item(result, label)
  for _, item in ipairs(items_of(result)) do
    if item.label == label then
      return item
    end
  end
  local labels = {}
  for _, item in ipairs(items_of(result)) do
    table.insert(labels, item.label)
  end
  error('no completion item ' .. label .. ' among ' .. table.concat(labels, ', '))
end

-- Wait until the buffer has a diagnostic on line `lnum` (0-based); all of its diagnostics.
local function diagnostics_at(buf, lnum)
  vim.wait(TIMEOUT, function()
    for _, d in ipairs(vim.diagnostic.get(buf)) do
      if d.lnum == lnum then
        return true
      end
    end
    return false
  end, 20)
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    table.insert(found, { lnum = d.lnum, col = d.col, severity = d.severity, message = d.message })
  end
  return found
end

-- Lines appended to each app.py: a call that type checks against one shapes only, and a
-- half-typed attribute to complete.
local function append(buf, lines)
  local count = vim.api.nvim_buf_line_count(buf)
  vim.api.nvim_buf_set_lines(buf, count, count, false, lines)
  return count -- the 0-based line of the first appended line
end

local alpha, client = open('alpha/app.py')
results.client = { name = client.name, offset_encoding = client.offset_encoding }
save()
step('alpha hover', function()
  return request(client, alpha, 'textDocument/hover', at(alpha, client, 'area(radius)', 1))
end)
step('alpha definition', function()
  return request(client, alpha, 'textDocument/definition', at(alpha, client, 'area(radius)', 1))
end)
local alpha_line = append(alpha, { 'import shapes', 'shapes.area("wide")', 'shapes.ar' })
step('alpha diagnostics', function()
  return diagnostics_at(alpha, alpha_line + 1)
end)
local alpha_completion = step('alpha completion', function()
  return request(client, alpha, 'textDocument/completion', at(alpha, client, 'shapes.ar', nil, true))
end)

-- The control: resolved before any other completion, alpha's item gets its documentation.
step('alpha resolve first', function()
  return request(client, alpha, 'completionItem/resolve', find_item(alpha_completion, 'area'))
end)

local beta = open('beta/app.py')
step('same client', function()
  return vim.lsp.get_clients({ bufnr = beta, name = 'typemux' })[1].id == client.id
end)
step('beta hover', function()
  return request(client, beta, 'textDocument/hover', at(beta, client, 'Circle(radius)', 1))
end)
step('beta definition', function()
  return request(client, beta, 'textDocument/definition', at(beta, client, 'Circle(radius)', 1))
end)
local beta_line = append(beta, { 'import shapes', 'shapes.area("wide")', 'shapes.Ci' })
step('beta diagnostics', function()
  return diagnostics_at(beta, beta_line + 1)
end)
local beta_completion = step('beta completion', function()
  return request(client, beta, 'textDocument/completion', at(beta, client, 'shapes.Ci', nil, true))
end)

-- Resolve alpha's item after beta's completion: it must be alpha's backend that answers.
step('alpha item', function()
  return find_item(alpha_completion, 'area')
end)
step('alpha resolve', function()
  return request(client, alpha, 'completionItem/resolve', find_item(alpha_completion, 'area'))
end)
step('beta resolve', function()
  return request(client, beta, 'completionItem/resolve', find_item(beta_completion, 'Circle'))
end)
step('resolve provider', function()
  return client.server_capabilities.completionProvider.resolveProvider == true
end)
-- What runs now (the proxy, its backends), to be checked gone after :qa!.
step('processes', function()
  local snapshot = vim.system(vim.json.decode(assert(os.getenv('CHECK_SNAPSHOT')))):wait()
  assert(snapshot.code == 0, snapshot.stderr)
  return vim.json.decode(snapshot.stdout)
end)

save()
vim.cmd('qa!')
