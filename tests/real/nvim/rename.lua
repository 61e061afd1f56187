-- Neovim's own rename (vim.lsp.buf.rename: prepareRename, rename, its own apply of the
-- WorkspaceEdit) of `greet`, from its call in services/a, over libs/core installed editable
-- into services/a, services/b and services/alias (tests/layouts.py). Writes each file's
-- buffer text after the rename to $CHECK_RESULT as JSON; the Python test judges.
--
--   CHECK_ROOT=<repo> CHECK_RESULT=<file.json> nvim --headless -u init.lua -l rename.lua

local root = assert(os.getenv('CHECK_ROOT'), 'CHECK_ROOT')
local out = assert(os.getenv('CHECK_RESULT'), 'CHECK_RESULT')
local TIMEOUT = 90000
local FILES = {
  'libs/core/src/core/__init__.py',
  'services/a/app.py',
  'services/b/app.py',
  'services/alias/app.py',
}
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

local function text_of(relative)
  local buf = vim.fn.bufnr(root .. '/' .. relative)
  if buf == -1 then
    return nil
  end
  vim.fn.bufload(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')
end

vim.cmd.edit(vim.fn.fnameescape(root .. '/services/a/app.py'))
local buf = vim.api.nvim_get_current_buf()
local ready = vim.wait(TIMEOUT, function()
  local client = vim.lsp.get_clients({ bufnr = buf, name = 'typemux' })[1]
  return client ~= nil and client.initialized == true
end, 20)
assert(ready, 'no typemux client attached')

step('rename', function()
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    local start = line:find('greet("a")', 1, true)
    if start then
      vim.api.nvim_win_set_cursor(0, { i, start })
    end
  end
  vim.lsp.buf.rename('salute')
  local done = vim.wait(TIMEOUT, function()
    local core = text_of(FILES[1])
    return core ~= nil and core:find('def salute', 1, true) ~= nil
  end, 20)
  local files = {}
  for _, relative in ipairs(FILES) do
    files[relative] = text_of(relative) or vim.NIL
  end
  assert(done, 'the rename never reached core: ' .. vim.inspect(files))
  return files
end)
step('processes', function()
  local snapshot = vim.system(vim.json.decode(assert(os.getenv('CHECK_SNAPSHOT')))):wait()
  assert(snapshot.code == 0, snapshot.stderr)
  return vim.json.decode(snapshot.stdout)
end)

save()
vim.cmd('qa!')
