package dev.cmc.cli;

import dev.cmc.dsl.SpecException;
import dev.cmc.runtime.data.Datasets;
import dev.cmc.runtime.train.Trainer;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** cmc: compile consistency models to kernels, train and sample them, benchmark them. */
@Command(name = "cmc", mixinStandardHelpOptions = true, version = "cmc 0.1.0",
        description = "A code-generating compiler for consistency models.",
        subcommands = {CheckCommand.class, CompileCommand.class, TrainCommand.class, SampleCommand.class, EvalCommand.class,
                BenchCommand.class, DevicesCommand.class, CommandLine.HelpCommand.class})
public final class Main {
    public static void main(String[] args) {
        System.exit(run(args));
    }

    public static int run(String... args) {
        var cli = new CommandLine(new Main());
        cli.setExecutionExceptionHandler((e, cmd, parsed) -> report(e));
        // A bad flag gets one line and a pointer to --help, not the whole usage text.
        cli.setParameterExceptionHandler((e, argv) -> {
            System.err.println("error: " + e.getMessage());
            System.err.println("see: " + e.getCommandLine().getCommandSpec().qualifiedName() + " --help");
            return 2;
        });
        return cli.execute(args);
    }

    /** Users see one clear message and an exit code, never a stack trace (unless CMC_DEBUG is set). */
    static int report(Exception e) {
        if (System.getenv("CMC_DEBUG") != null) e.printStackTrace();
        switch (e) {
            case SpecException s -> { System.err.println(s.render()); return 2; }
            case Datasets.DataException d -> { System.err.println("error: " + d.getMessage()); return 2; }
            case UserError u -> { System.err.println("error: " + u.getMessage()); return 2; }
            case dev.cmc.runtime.Backends.UnavailableException u -> { System.err.println("error: " + u.getMessage()); return 2; }
            case dev.cmc.runtime.SettingException s -> { System.err.println("error: " + s.getMessage()); return 2; }
            case dev.cmc.runtime.opencl.OpenClBinaries.RefusedException r -> { System.err.println("error: " + r.getMessage()); return 2; }
            case dev.cmc.runtime.train.Distillation.TeacherMismatchException t -> { System.err.println("error: " + t.getMessage()); return 2; }
            case Trainer.DivergedException d -> { System.err.println("error: " + d.getMessage()); return 3; }
            default -> {
                System.err.println("error: " + e.getClass().getSimpleName() + ": " + e.getMessage()
                        + "\n(this is a cmc bug; rerun with CMC_DEBUG=1 for the stack trace)");
                return 1;
            }
        }
    }

    /** A mistake in flags or files, reported as one line. */
    static final class UserError extends RuntimeException {
        UserError(String message) { super(message); }
    }
}
