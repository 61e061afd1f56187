;;; check.el --- drive eglot over the example monorepo, record what it got  -*- lexical-binding: t -*-

;; CHECK_ROOT=<monorepo> CHECK_CONFIG=<the README's snippet> CHECK_RESULT=<file.json> \
;;   emacs --batch -l check.el
;;
;; eglot (configured by the README's own snippet) manages alpha/app.py then beta/app.py: hover,
;; definition, and diagnostics (through flymake) after an edit in each. Every step's value or
;; error is written to $CHECK_RESULT as JSON after each step; the Python test judges. At the
;; end Emacs quits with the server still running, as a user's Emacs does.
;;
;; Batch mode runs no timers: eglot's pending didChange is sent explicitly and flymake is
;; started by hand.

(require 'eglot)
(require 'flymake)
(require 'json)

(load (getenv "CHECK_CONFIG") nil t)  ; the README's snippet

(defvar check-root (file-name-as-directory (getenv "CHECK_ROOT")))
(defvar check-results (make-hash-table :test 'equal))
(defconst check-timeout 90)

(defun check-save ()
  (let ((coding-system-for-write 'utf-8))
    (with-temp-file (getenv "CHECK_RESULT")
      (insert (json-encode check-results)))))

(defmacro check-step (name &rest body)
  "Record BODY's value (or its error) under NAME; return the value."
  `(let ((outcome (condition-case err
                      (list :value (progn ,@body))
                    (error (list :error (error-message-string err))))))
     (puthash ,name outcome check-results)
     (check-save)
     (plist-get outcome :value)))

(defun check-wait (predicate)
  "Process input until PREDICATE is true or the timeout passes; PREDICATE's last value."
  (let ((deadline (+ (float-time) check-timeout)))
    (while (and (not (funcall predicate)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (funcall predicate)))

(defun check-open (relative)
  "Visit RELATIVE; connect eglot (once) and make sure it manages the buffer."
  (find-file (expand-file-name relative check-root))
  (unless (eglot-current-server)
    (apply #'eglot (eglot--guess-contact)))
  (unless (check-wait (lambda () (and (eglot-current-server) (eglot-managed-p))))
    (error "eglot does not manage %s" relative))
  (flymake-mode 1)
  (flymake-start)
  (current-buffer))

(defun check-at (needle offset)
  "LSP position params at NEEDLE's start plus OFFSET, in the current buffer."
  (goto-char (point-min))
  (search-forward needle)
  (goto-char (+ (match-beginning 0) offset))
  (eglot--TextDocumentPositionParams))

(defun check-request (method params)
  (jsonrpc-request (eglot--current-server-or-lose) method params :timeout check-timeout))

(defun check-append (text)
  "Append TEXT and send eglot's pending didChange; the 0-based line where TEXT starts."
  (goto-char (point-max))
  (let ((line (1- (line-number-at-pos))))
    (insert text)
    (eglot--signal-textDocument/didChange)
    line))

(defun check-diagnostics-at (line)
  "Wait for a flymake diagnostic on LINE (0-based); all the buffer's diagnostics."
  (check-wait
   (lambda ()
     (flymake-start)
     (seq-some (lambda (d) (= (1- (line-number-at-pos (flymake-diagnostic-beg d))) line))
               (flymake-diagnostics))))
  (vconcat
   (mapcar (lambda (d)
             (list :lnum (1- (line-number-at-pos (flymake-diagnostic-beg d)))
                   :type (symbol-name (flymake-diagnostic-type d))
                   :message (flymake-diagnostic-text d)))
           (flymake-diagnostics))))

(defvar check-server nil)

(defun check-buffer (relative)
  (or (get-file-buffer (expand-file-name relative check-root)) (error "%s is not open" relative)))

(check-step "open alpha" (buffer-name (check-open "alpha/app.py")))
(with-current-buffer (check-buffer "alpha/app.py")
  (setq check-server (eglot-current-server))
  (check-step "alpha hover" (check-request :textDocument/hover (check-at "area(radius)" 1)))
  (check-step "alpha definition"
              (check-request :textDocument/definition (check-at "area(radius)" 1)))
  (let ((line (check-append "import shapes\nshapes.area(\"wide\")\n")))
    (check-step "alpha diagnostics" (check-diagnostics-at (1+ line)))))

(check-step "open beta" (buffer-name (check-open "beta/app.py")))
(with-current-buffer (check-buffer "beta/app.py")
  (check-step "same server" (if (eq (eglot-current-server) check-server) t :json-false))
  (check-step "beta hover" (check-request :textDocument/hover (check-at "Circle(radius)" 1)))
  (check-step "beta definition"
              (check-request :textDocument/definition (check-at "Circle(radius)" 1)))
  (let ((line (check-append "import shapes\nshapes.area(\"wide\")\n")))
    (check-step "beta diagnostics" (check-diagnostics-at (1+ line)))))

;; What runs now (the proxy, its backends), to be checked gone after Emacs quits.
(check-step "processes"
  (with-temp-buffer
    (let ((command (json-parse-string (getenv "CHECK_SNAPSHOT") :array-type 'list)))
      (unless (zerop (apply #'call-process (car command) nil t nil (cdr command)))
        (error "snapshot failed: %s" (buffer-string)))
      (json-parse-string (buffer-string) :object-type 'alist))))

(check-save)
;; Quit with the server running, as a user does: Emacs signals the server's process group.
(kill-emacs 0)
