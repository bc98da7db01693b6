/**
 * The console worker's Ruby program, shipped inside espm's JavaScript (the build copies only
 * compiled TypeScript) and written to `<state dir>/console-worker.rb` before a worker starts.
 * See src/classifier/console-worker.ts for the TypeScript side of its protocol.
 *
 * It must stay within Ruby 1.8.7's syntax and standard library (PE 2.x ships Ruby 1.8.7,
 * PE 3.x 1.9.3): no `->`, no `key:` hash literals, no `&.`, no `require_relative`, no
 * `each_with_object`, no gems. test/classifier/worker.test.ts checks for these.
 *
 * @packageDocumentation
 */

/** File name of the worker program in the state directory. */
export const CONSOLE_WORKER_FILE = 'console-worker.rb';

/** The worker program (Ruby 1.8.7+). */
export const CONSOLE_WORKER_SOURCE = String.raw`# espm console worker: keeps a Puppet console's Rakefile (and its Rails boot) loaded and runs
# rake tasks for espm one at a time, answering exactly what "rake -s -f RAKEFILE
# RAILS_ENV=ENV TASK k=v ..." run as its own process would have printed and exited with.
#
# Written by espm (src/classifier/console-worker-source.ts); do not edit: espm rewrites it.
# Ruby 1.8.7 syntax and standard library only (PE 2.x ships Ruby 1.8.7, PE 3.x 1.9.3).
#
# Usage: ruby console-worker.rb RAKEFILE RAILS_ENV     (cwd: the console's directory)
#
# Protocol. Requests on stdin, answers on stdout (the original descriptors; the tasks' own
# stdin is /dev/null and their stdout/stderr are captured per task). Every frame starts with
# an ASCII header line; every payload is counted in bytes, so any byte may appear in it.
#
#   request:  "@espm KIND ID N\n" then N fields, each "LENGTH\n" BYTES "\n"
#             KIND task    fields: task name, then rake's argv elements ("key=value")
#             KIND refresh no fields: reconnect ActiveRecord (the connection may have idled out)
#             KIND quit    no fields: exit
#   answer:   "@espm KIND ID CODE OUTLEN ERRLEN\n" OUT ERR "\n"
#             ready     ID 0, CODE 0 when the Rakefile loaded and the environment booted, else
#                       the status rake would have exited with (OUT/ERR: what it printed); the
#                       worker then exits
#             started   the request ID was read and its task is about to run (CODE 0)
#             done      CODE = the task's exit status, OUT/ERR its stdout/stderr
#             refreshed CODE 0 reconnected, 1 no ActiveRecord here, 2 failed (ERR: why)
#             bye       answer to quit
# Any malformed request makes the worker exit (status 3) without answering it.

require 'fcntl'

module EspmConsoleWorker
  HEADER = /\A@espm (task|refresh|quit) (\d{1,15}) (\d{1,6})\n\z/
  LENGTH = /\A(\d{1,12})\n\z/
  # rake's own pattern for key=value arguments (0.8.7; espm never sends a newline).
  ENV_ARGUMENT = /\A(\w+)=(.*)\z/
  MAX_FIELD_BYTES = 1048576
  ME = File.expand_path(__FILE__)

  class ProtocolError < StandardError; end

  class Worker
    def initialize(rakefile, rails_env)
      @rakefile = rakefile
      @rails_env = rails_env
      @terminating = false
      # A rake process's stdout is buffered and its stderr not; a reopened stream takes the
      # buffering of the file it is pointed at, so both are set back after every redirect.
      @stdout_sync = STDOUT.sync
      @stderr_sync = STDERR.sync
      @requests = private_copy(STDIN)
      @answers = private_copy(STDOUT)
      @answers.sync = true
      @diagnostics = private_copy(STDERR)
      @diagnostics.sync = true
      STDIN.reopen('/dev/null', 'r')
      @out = capture_file('out')
      @err = capture_file('err')
      redirect(@diagnostics, @diagnostics)
    end

    # Loads the Rakefile, boots the environment, then serves requests until stdin closes.
    def run
      load_status, load_out, load_err = capture { load_rakefile }
      @load_out = load_out
      @load_err = load_err
      if load_status != 0
        answer('ready', 0, load_status, load_out, load_err)
        return load_status
      end
      boot_status, boot_out, boot_err = capture { boot }
      @boot_out = load_out + boot_out
      @boot_err = load_err + boot_err
      answer('ready', 0, boot_status, @boot_out, @boot_err)
      return boot_status if boot_status != 0

      serve
    end

    private

    # A close-on-exec duplicate of one of the standard descriptors, kept for the protocol.
    def private_copy(io)
      copy = io.dup
      copy.fcntl(Fcntl::F_SETFD, Fcntl::FD_CLOEXEC)
      copy.binmode
      copy
    end

    # An unlinked temporary file: a task's stdout or stderr goes there while it runs.
    def capture_file(name)
      dir = ENV['TMPDIR'] && File.directory?(ENV['TMPDIR']) ? ENV['TMPDIR'] : '/tmp'
      path = File.join(dir, "espm-console-worker-#{Process.pid}-#{name}-#{rand(1 << 30)}")
      file = File.open(path, File::RDWR | File::CREAT | File::EXCL, 0600)
      File.unlink(path)
      file.fcntl(Fcntl::F_SETFD, Fcntl::FD_CLOEXEC)
      file.binmode
      file
    end

    def load_rakefile
      begin
        require 'rubygems'
      rescue LoadError
        nil
      end
      require 'rake'
      ARGV.replace(['-s', '-f', @rakefile, "RAILS_ENV=#{@rails_env}"])
      app = Rake.application
      app.init('rake')
      app.top_level_tasks.clear
      app.load_rakefile
    end

    # The Rails boot: the environment task, once for the worker's life.
    def boot
      app = Rake.application
      return unless Rake::Task.task_defined?('environment')

      ARGV.replace(['-s', '-f', @rakefile, "RAILS_ENV=#{@rails_env}"])
      app.send(:standard_exception_handling) do
        begin
          Rake::Task['environment'].invoke
        rescue SystemExit
          raise
        rescue Exception => e
          scrub(e)
          raise e
        end
      end
    end

    # Runs the block with stdout and stderr going to the capture files.
    # Returns [status, stdout, stderr]; status 0 unless the block exited (SystemExit).
    def capture
      [@out, @err].each do |file|
        file.truncate(0)
        file.rewind
      end
      redirect(@out, @err)
      status = 0
      begin
        yield
      rescue SystemExit => e
        status = e.status
      ensure
        [$stdout, $stderr, STDOUT, STDERR].each do |io|
          begin
            io.flush
          rescue Exception
            nil
          end
        end
        redirect(@diagnostics, @diagnostics)
        $stdout = STDOUT
        $stderr = STDERR
      end
      [status, contents(@out), contents(@err)]
    end

    # Points the process's stdout and stderr (descriptors 1 and 2) at these files.
    def redirect(out, err)
      STDOUT.reopen(out)
      STDERR.reopen(err)
      STDOUT.sync = @stdout_sync
      STDERR.sync = @stderr_sync
    end

    def contents(file)
      file.rewind
      data = file.read
      data.nil? ? '' : data
    end

    def serve
      loop do
        request = read_request
        return 0 if request.nil?

        kind, id, fields = request
        case kind
        when 'quit'
          answer('bye', id, 0, '', '')
          return 0
        when 'refresh'
          code, message = refresh_connections
          answer('refreshed', id, code, '', message)
        when 'task'
          raise ProtocolError, 'a task request needs a task name' if fields.empty?
          fields[1..-1].each do |arg|
            raise ProtocolError, 'task arguments must be key=value' unless ENV_ARGUMENT.match(arg)
          end

          answer('started', id, 0, '', '')
          status, out, err = run_task(fields[0], fields[1..-1])
          return status if @terminating

          answer('done', id, status, out, err)
        end
      end
    end

    # One request, or nil at the end of input.
    def read_request
      header = @requests.gets
      return nil if header.nil?
      match = HEADER.match(header)
      raise ProtocolError, "bad request header #{header[0, 80].inspect}" if match.nil?

      fields = []
      match[3].to_i.times do
        length = LENGTH.match(@requests.gets.to_s)
        raise ProtocolError, 'bad field length' if length.nil?
        size = length[1].to_i
        raise ProtocolError, 'field too long' if size > MAX_FIELD_BYTES
        data = size.zero? ? '' : @requests.read(size)
        raise ProtocolError, 'truncated field' if data.nil? || bytes(data) != size
        raise ProtocolError, 'field not terminated' unless @requests.read(1) == "\n"
        fields << data
      end
      [match[1], match[2], fields]
    end

    def answer(kind, id, code, out, err)
      out = out.to_s
      err = err.to_s
      @answers.write("@espm #{kind} #{id} #{code} #{bytes(out)} #{bytes(err)}\n")
      @answers.write(out)
      @answers.write(err)
      @answers.write("\n")
      @answers.flush
    end

    def bytes(text)
      text.respond_to?(:bytesize) ? text.bytesize : text.length
    end

    # Runs one task as "rake -s -f RAKEFILE RAILS_ENV=ENV TASK ARGS..." would: ARGV, the
    # top-level task and ENV as rake sets them, restored afterwards.
    def run_task(task, args)
      app = Rake.application
      saved_env = ENV.to_hash
      saved_argv = ARGV.dup
      argv = ['-s', '-f', @rakefile, "RAILS_ENV=#{@rails_env}", task] + args
      ARGV.replace(localised(argv))
      app.top_level_tasks.replace([task])
      ENV['RAILS_ENV'] = @rails_env
      args.each do |arg|
        pair = ENV_ARGUMENT.match(arg)
        ENV[pair[1]] = pair[2]
      end
      Thread.current[:rake_display_exception_details_seen] = nil
      status, out, err = capture { invoke(app, task) }
      booted = needs_environment?(app, task)
      [status, (booted ? @boot_out : @load_out) + out, (booted ? @boot_err : @load_err) + err]
    ensure
      ARGV.replace(saved_argv)
      app.top_level_tasks.clear
      restore_env(saved_env)
      reenable_tasks(app)
    end

    def invoke(app, task)
      app.send(:standard_exception_handling) do
        begin
          app.invoke_task(task)
        rescue SystemExit
          raise
        rescue Exception => e
          @terminating = true if e.is_a?(SignalException)
          scrub(e)
          raise e
        end
      end
    end

    # Whether a process running this task would have booted (run the environment task).
    def needs_environment?(app, task)
      name = task.sub(/\[.*\]\z/, '')
      return false unless Rake::Task.task_defined?(name)

      seen = {}
      pending = [Rake::Task[name]]
      until pending.empty?
        current = pending.shift
        next if seen[current.name]
        seen[current.name] = true
        return true if current.name == 'environment'
        pending.concat(prerequisites_of(app, current))
      end
      false
    rescue Exception
      true
    end

    def prerequisites_of(app, task)
      return task.prerequisite_tasks if task.respond_to?(:prerequisite_tasks)
      scope = task.respond_to?(:scope) ? task.scope : nil
      task.prerequisites.map { |p| app[p, scope] }
    end

    # The worker's own frames (below rake's invocation) are not what a rake process shows.
    def scrub(error)
      seen = {}
      while error && !seen[error.object_id]
        seen[error.object_id] = true
        trace = error.backtrace
        if trace
          mine = nil
          trace.each_with_index do |frame, i|
            if frame.index("#{ME}:") == 0
              mine = i
              break
            end
          end
          error.set_backtrace(trace[0, mine]) if mine
        end
        error = error.respond_to?(:cause) ? error.cause : nil
      end
    end

    def restore_env(saved)
      ENV.keys.each { |key| ENV.delete(key) unless saved.key?(key) }
      saved.each { |key, value| ENV[key] = value unless ENV[key] == value }
    end

    # Every task may run again, except the environment (the boot happens once).
    def reenable_tasks(app)
      app.tasks.each do |t|
        next if t.name == 'environment'
        if t.respond_to?(:reenable)
          t.reenable
        else
          t.instance_variable_set(:@already_invoked, false)
        end
      end
    end

    # Ruby >= 1.9: argv elements carry the locale's encoding, as a process's ARGV does.
    def localised(strings)
      return strings unless ''.respond_to?(:force_encoding) && defined?(Encoding)
      strings.map { |s| s.dup.force_encoding(Encoding.default_external) }
    end

    def refresh_connections
      return [1, 'no ActiveRecord connection in this console'] unless defined?(::ActiveRecord::Base) && ::ActiveRecord::Base.respond_to?(:connection)

      status, out, err = capture do
        base = ::ActiveRecord::Base
        base.clear_all_connections! if base.respond_to?(:clear_all_connections!)
        base.verify_active_connections! if base.respond_to?(:verify_active_connections!)
        base.connection
      end
      status == 0 ? [0, ''] : [2, "exit #{status}: #{out}#{err}"]
    rescue Exception => e
      [2, "#{e.class}: #{e.message}"]
    end
  end
end

if $0 == __FILE__
  if ARGV.length != 2
    STDERR.puts 'usage: console-worker.rb RAKEFILE RAILS_ENV'
    exit 2
  end
  worker = EspmConsoleWorker::Worker.new(ARGV[0], ARGV[1])
  begin
    exit(worker.run)
  rescue EspmConsoleWorker::ProtocolError => e
    STDERR.puts "espm console worker: #{e.message}"
    exit 3
  rescue Errno::EPIPE
    exit 4
  end
end
`;
