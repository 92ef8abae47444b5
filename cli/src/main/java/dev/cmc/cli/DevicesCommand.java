package dev.cmc.cli;

import dev.cmc.runtime.Backends;
import dev.cmc.runtime.jvm.JvmBackend;
import dev.cmc.runtime.opencl.OpenClDevices;
import picocli.CommandLine.Command;

import java.util.concurrent.Callable;

@Command(name = "devices", mixinStandardHelpOptions = true, description = "List the devices each backend can run on, and what auto picks.")
final class DevicesCommand implements Callable<Integer> {
    @Override
    public Integer call() {
        System.out.printf("jvm:0     %s, %d threads, %d-lane float vectors (Vector API), Java %s%n",
                System.getProperty("os.arch"), Runtime.getRuntime().availableProcessors(), JvmBackend.lanes(), Runtime.version());
        var cl = OpenClDevices.list();
        if (cl.isEmpty()) System.out.println("opencl    none: " + OpenClDevices.unavailable());
        for (var d : cl) System.out.println(d.describe());
        var cuda = dev.cmc.runtime.cuda.CudaDevices.list();
        if (cuda.isEmpty()) System.out.println("cuda      none: " + dev.cmc.runtime.cuda.CudaDevices.unavailable());
        for (var d : cuda) System.out.println(d.describe());
        String tornado = dev.cmc.runtime.tornado.TornadoSdk.unavailable();
        if (tornado != null) System.out.println("tornado   none: " + tornado);
        else {
            var devices = dev.cmc.runtime.tornado.TornadoSdk.find().devices();
            if (devices.isEmpty()) System.out.println("tornado   none: TornadoVM lists no device");
            for (String d : devices) System.out.println("tornado   " + d);
        }
        System.out.println("auto picks " + Backends.autoChoice(Backends.OPENCL_CPU_MIN_PARAMS) + " for models of "
                + String.format("%,d", Backends.OPENCL_CPU_MIN_PARAMS) + "+ parameters, " + Backends.autoChoice(0) + " for smaller ones");
        return 0;
    }
}
